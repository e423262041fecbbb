"""A simulated Kubernetes API server, scheduler, controllers and kubelets on simulated GPUs.

A test double and a demo: the official client and kubectl talk to it as to a real cluster on the
paths gpuherd uses. Nothing on the broker side imports it (an import-linter contract).
"""

from gpuherd.simcluster.cluster import NodeSpec, SimCluster

__all__ = ["NodeSpec", "SimCluster"]
