"""What the keeper asks before it releases a tenant and tells once tenants are back: a claim on
the GPU (in the Kubernetes mode, a Lease per GPU of the node, `gpuherd.k8s.gpulease`). Locally
there is none: the state dir's lock is the only claim one host needs."""

from __future__ import annotations

from typing import Protocol

from gpuherd.ids import GpuName


class GpuClaim(Protocol):
    def hold(self, gpu: GpuName | None) -> str | None:
        """Before a tenant on `gpu` (None: the broker's every GPU) is released: take or keep
        the claim. None when held, else why not (the release is then refused)."""
        ...

    def settle(self, released: set[GpuName | None]) -> None:
        """The GPUs with tenants released now: keep (renew) their claims, let go of the rest."""
        ...
