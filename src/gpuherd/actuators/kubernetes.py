"""The `kubernetes` release method: scale the tenant's workload's pods on this node away and
back (see `gpuherd.k8s.scaling`). Only in the Kubernetes mode, which opens the session it uses.
The keeper journals the intent before and checks the GPU after: a scale that returned is not
yet memory freed. Each release, refusal and restore is also a Kubernetes Event on the workload
(`gpuherd.k8s.events`)."""

from __future__ import annotations

from typing import Any

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.k8s import events, scaling
from gpuherd.k8s.client import KubeError, Ref
from gpuherd.k8s.session import Session, current
from gpuherd.spec.model import KubernetesMethod


class KubernetesActuator:
    kind = "kubernetes"

    def __init__(self, method: KubernetesMethod) -> None:
        self.ref = Ref(method.kind_, method.namespace, method.name)

    def _session(self) -> Session:
        session = current()
        if session is None:
            raise ActuatorError(
                "the kubernetes method needs the Kubernetes mode (gpuherd serve --kubernetes)"
            )
        return session

    def release(self, ctx: ActContext) -> dict[str, Any]:
        s = self._session()
        job = ctx.env.get("GPUHERD_RELEASE_FOR", "unknown")
        workload = s.workload(self.ref.kind, self.ref.namespace, self.ref.name)
        here = None
        if workload is not None and s.pods.synced.is_set():
            # From the watches: no request between the decision and the scale but the writes.
            want = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            here = [
                p
                for p in s.pods.items()
                if p["metadata"].get("namespace") == self.ref.namespace
                and not p["metadata"].get("deletionTimestamp")
                and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in want.items())
            ]
        try:
            done = scaling.release(
                s.client,
                self.ref,
                node=s.node,
                job=job,
                workload=workload,
                here=here,
                watched=s.leases,
            )
        except (scaling.Refused, KubeError) as exc:
            self._emit(s, workload, events.REFUSED, f"not released for gpuherd job {job}: {exc}")
            raise ActuatorError(str(exc)) from None
        how = (
            f"ScaledObject {done.keda} paused"
            if done.keda
            else f"{done.removed} pod(s) scaled away"
        )
        if done.taken_from:  # its node's broker stopped renewing its GPU lease
            how += f", taken over from node {done.taken_from}, whose broker is gone"
        self._emit(
            s,
            workload,
            events.RELEASED,
            f"released on node {s.node} for gpuherd job {job}: {how} "
            f"(restores to {done.replicas} replicas)",
        )
        return {
            "workload": str(self.ref),
            "replicas": done.replicas,
            "removed": done.removed,
            "keda": done.keda,
        }

    def restore(self, ctx: ActContext, detail: dict[str, Any]) -> dict[str, Any]:
        s = self._session()
        keda = detail.get("keda")
        try:
            replicas = scaling.restore(
                s.client,
                self.ref,
                replicas=detail.get("replicas"),
                keda=str(keda) if keda else None,
                timeout=ctx.timeout,
                read=(
                    (lambda: s.workload(self.ref.kind, self.ref.namespace, self.ref.name))
                    if self.ref.kind in s.workloads
                    else None
                ),
                node=s.node,
            )
        except KubeError as exc:
            self._emit(s, None, events.RESTORE_FAILED, f"restore on node {s.node} failed: {exc}")
            raise ActuatorError(str(exc)) from None
        self._emit(s, None, events.RESTORED, f"restored to {replicas} replicas by node {s.node}")
        return {"workload": str(self.ref), "replicas": replicas}

    def _emit(self, s: Session, workload: Any, reason: str, message: str) -> None:
        """An event on the workload (best effort: never fails the release or restore)."""
        if s.events is None:
            return
        if workload is None:
            workload = s.workload(self.ref.kind, self.ref.namespace, self.ref.name)
        uid = None if workload is None else workload["metadata"].get("uid")
        involved = events.reference(
            "apps/v1", self.ref.kind, self.ref.namespace, self.ref.name, uid
        )
        warning = reason in (events.REFUSED, events.RESTORE_FAILED)
        s.events.emit(involved, reason, message, warning=warning)
