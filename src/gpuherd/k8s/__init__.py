"""Kubernetes mode: the API client (the only module importing `kubernetes`), workloads as
tenants, the scale release method's steps, leases and Job preflight. Nothing here imports the
broker: the broker's Kubernetes launcher and the mode's wiring live in `gpuherd.broker`."""
