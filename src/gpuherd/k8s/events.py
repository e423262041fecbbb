"""Kubernetes Events (core/v1) on the objects the broker acts on, so `kubectl describe` and
`kubectl get events` tell what gpuherd did to a workload or a Job and why.

Reasons are CamelCase like Kubernetes' own: on a tenant's workload `GpuherdReleased`,
`GpuherdRestored`, `GpuherdRefused` (Warning: the release would fight another controller),
`GpuherdRestoreFailed` (Warning); on a Job `GpuherdAdmitted`, `GpuherdRefused` (Warning: its
preflight failed), `GpuherdFinished` (Warning unless it succeeded). Each names the object in
`involvedObject`, `gpuherd` as `source.component` and `reportingComponent`, and the node as
`source.host` and `reportingInstance`. Each is one API request, so there are no more than these
(a Job's start shows in its own conditions).

An event is best effort and never part of an action: `emit` only puts it on a bounded queue
(full: the event is dropped and counted) and a thread of its own sends it with a short request
timeout. A slow or absent API server delays no release, restore or admission.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

from gpuherd.k8s.client import KubeClient

Obj = dict[str, Any]
log = logging.getLogger(__name__)
COMPONENT = "gpuherd"
NORMAL, WARNING = "Normal", "Warning"
_QUEUE = 256  # events waiting to be sent; past this they are dropped
_MESSAGE = 1024  # the API server's limit on an event's note
_TIMEOUT = 5.0  # seconds for one event's request
_STOP = object()

RELEASED = "GpuherdReleased"
RESTORED = "GpuherdRestored"
RESTORE_FAILED = "GpuherdRestoreFailed"
REFUSED = "GpuherdRefused"
ADMITTED = "GpuherdAdmitted"
FINISHED = "GpuherdFinished"


def about(obj: Obj) -> Obj:
    """The `involvedObject` (an ObjectReference) naming a whole object as the API returned it."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    return {k: v for k, v in ref.items() if v}


def reference(api_version: str, kind: str, namespace: str, name: str, uid: str | None) -> Obj:
    """An `involvedObject` from its parts (a watch's list items carry no kind)."""
    ref = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    return {**ref, "uid": uid} if uid else ref


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(involved: Obj, reason: str, message: str, *, kind: str, node: str, at: float) -> Obj:
    """The Event body, as client-go's recorder writes one (a legacy core/v1 Event: no
    eventTime, so its namespace is the object's)."""
    name = str(involved.get("name") or "object")[:200]
    if len(message) > _MESSAGE:
        message = message[: _MESSAGE - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{name}.{int(at * 1e9):x}",
            "namespace": involved.get("namespace") or "default",
        },
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT,
        "reportingInstance": node,
        "firstTimestamp": _stamp(at),
        "lastTimestamp": _stamp(at),
        "count": 1,
    }


class Recorder:
    """Sends events from a thread of its own; `emit` never blocks and never raises."""

    def __init__(self, client: KubeClient, node: str, *, capacity: int = _QUEUE) -> None:
        self.client, self.node = client, node
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._abandoned = False
        self.sent = 0
        self.dropped = 0  # the queue was full
        self.failed = 0  # the API server refused or did not answer

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpuherd-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Send what is queued for at most `timeout` seconds; what is left then is dropped."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._abandoned = True  # a request under way ends with its timeout; no other follows

    def emit(self, involved: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        try:
            body = event(
                involved,
                reason,
                message,
                kind=WARNING if warning else NORMAL,
                node=self.node,
                at=time.time(),
            )
            self._queue.put_nowait(body)
        except queue.Full:
            self.dropped += 1
        except Exception:  # a malformed reference must not fail the action that reports it
            log.exception("event %s not queued", reason)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            if body is _STOP or self._abandoned:
                return
            try:
                self.client.create_event(body["metadata"]["namespace"], body, timeout=_TIMEOUT)
                self.sent += 1
            except Exception as exc:  # best effort: a lost event is logged, never raised
                self.failed += 1
                log.warning("event %s not sent: %s", body.get("reason"), exc)
