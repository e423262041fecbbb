"""Static analysis of GPU configuration: Kubernetes, Compose, ECS and runtime config files."""
