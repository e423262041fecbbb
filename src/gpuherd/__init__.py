"""gpuherd: share a few NVIDIA GPUs between many services and jobs without losing work."""

__version__ = "0.1.0"
