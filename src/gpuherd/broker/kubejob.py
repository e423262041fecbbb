"""Jobs as Kubernetes Jobs: the Job exists, suspended; launching it pins it to this node and
unsuspends it (the Job API lets a suspended, never-started Job's node selector change). Its
pods are followed through the node's pod watch, its end through the queued-Jobs watch: no
polling. Its pods' logs are streamed into the job's log file as they are written, and read
whole once more when it ends.

Two ways in, one path: a suspended Job labelled `gpuherd.io/queue` (admitted by `kubemode`), or
a config job with `kubernetes: {template: ...}` submitted like any config job, whose Job
`prepare` creates, suspended, before any tenant is released (and checks its volumes and
placement there, as admission does).

How it ends, whatever ends it: its controller (Complete; Failed, with DeadlineExceeded read as a
timeout), the broker (`stop`: its timeout, `not_on_cpu`, a cancel; the Job gets
activeDeadlineSeconds 1, so it ends Failed and is never admitted again), or someone deleting it
(its last state from the watch still tells how). The Job's `ttlSecondsAfterFinished` is taken
over at launch (moved into an annotation) so the Job and its pods outlive the reading of its
result; `kubemode` deletes it after that ttl once the result is recorded.

`KubeModeLauncher` is the launcher of the Kubernetes mode: Kubernetes Jobs here, anything
submitted with a command (`gpuherd submit`) as local processes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpuherd.broker.launcher import Exited, Launcher, LaunchError
from gpuherd.broker.local import LocalLauncher
from gpuherd.broker.records import Handle
from gpuherd.gpu.attribution import read_origin
from gpuherd.ids import JobId
from gpuherd.k8s import events, jobs
from gpuherd.k8s.annotations import JOB_ID, STOPPED, TTL, lands_on
from gpuherd.k8s.client import Conflict, KubeError, NotFound
from gpuherd.k8s.leases import JOB_SECONDS, holds, lease_name
from gpuherd.k8s.preflight import job_volumes
from gpuherd.k8s.session import Session, current
from gpuherd.spec.model import GpuSpec, JobSpec

Obj = dict[str, Any]
KUBE_JOB = "GPUHERD_KUBE_JOB"  # in a queued job's env: NAMESPACE/NAME of its Kubernetes Job
_LOG_CHECK = 0.2  # seconds between looks (in the watch's cache) for a pod whose log to follow
_LOG_DRAIN = 2.0  # seconds the log streams get to reach their end when the Job ends
# A Job's lease taken this much short of its life ago is surely still ours: room for clocks that
# differ between nodes and a start that takes a moment.
_LEASE_MARGIN = 15.0


def job_ref(job: Obj) -> Obj:
    """The `involvedObject` of an event about a Job (watch and list items alike)."""
    meta = job["metadata"]
    return events.reference("batch/v1", "Job", meta["namespace"], meta["name"], meta.get("uid"))


class _LogFollower:
    """Copies a Job's pods' logs into its log file as they are written, one stream per pod:
    `gpuherd logs -f` shows them live, and a Job its controller ends for its deadline (or
    someone deletes) takes its pods, and their logs, with it."""

    def __init__(self, launcher: KubeJobLauncher, handle: Handle) -> None:
        self.launcher, self.handle = launcher, handle
        self.out = Path(handle.get("out"))
        self.out.write_bytes(b"")  # from the start (again, after a broker restart)
        self.wrote = False
        self.whole: set[str] = set()  # pods whose stream reached the end of their log
        self._seen: set[str] = set()
        self._streams: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpuherd-job-logs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(_LOG_CHECK):
            for pod in self.launcher._pods(self.handle):
                meta = pod["metadata"]
                states = [
                    c.get("state") or {}
                    for c in (pod.get("status") or {}).get("containerStatuses") or []
                ]
                if meta["name"] in self._seen or not any(
                    "running" in st or "terminated" in st for st in states
                ):
                    continue  # no log before a container started
                self._seen.add(meta["name"])
                stream = threading.Thread(
                    target=self._copy, args=(meta["namespace"], meta["name"]), daemon=True
                )
                self._streams.append(stream)
                stream.start()

    def _copy(self, namespace: str, name: str) -> None:
        try:
            for chunk in self.launcher.s.client.follow_pod_log(namespace, name):
                with self._lock, self.out.open("ab") as f:
                    f.write(chunk)
                    self.wrote = True
        except KubeError:
            return  # the pod went first: what was copied stays, the end's reading completes it
        with self._lock:
            self.whole.add(name)

    def close(self, wait: float) -> None:
        """Stop looking for pods; give the open streams `wait` seconds to reach their end."""
        self._stop.set()
        deadline = time.monotonic() + wait
        for stream in self._streams:
            stream.join(max(0.0, deadline - time.monotonic()))


class KubeJobLauncher:
    name = "kubejob"

    def __init__(self, session: Session, queued: Any) -> None:
        self.s = session
        self.jobs = queued  # the queued-Jobs cache (gpuherd.k8s.pods.Cache)
        self._created: dict[JobId, tuple[str, str]] = {}  # by prepare: job id -> (ns, name)
        self._node_labels: dict[str, str] | None = None
        self._logs: dict[str, _LogFollower] = {}  # by the Job's uid, while it runs

    def _emit(self, job: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        if self.s.events is not None:
            self.s.events.emit(job_ref(job), reason, message, warning=warning)

    def _job(self, handle: Handle) -> Obj | None:
        """The Job as the watch last saw it (deleted lately included), else as the API has it."""
        uid = handle.get("uid")
        for job in self.jobs.items():
            if job["metadata"]["uid"] == uid:
                return dict(job)
        for job in reversed(self.jobs.removed()):
            if (job.get("metadata") or {}).get("uid") == uid:
                return dict(job) | {"deleted": True}
        try:  # not (yet) in the cache: ask once
            job = self.s.client.get_job(handle.get("namespace"), handle.get("name"))
        except NotFound:
            return None
        return job if job["metadata"]["uid"] == uid else None

    def _by_name(self, namespace: str, name: str) -> Obj:
        found = self.jobs.get(namespace, name)
        return dict(found) if found is not None else self.s.client.get_job(namespace, name)

    # --- before any tenant is released --------------------------------------------------------
    def prepare(self, job_id: JobId, name: str, job: JobSpec) -> list[str]:
        """A config job with a template: create its Job suspended (or find the one created
        before a crash) and check it can run here. A queued Job was checked at admission."""
        if job.kubernetes is None:
            return []
        node = self.s.node
        body = jobs.from_template(
            job.kubernetes.template,
            name=name,
            job_id=job_id,
            node=node,
            vram=str(job.vram),
            priority=job.priority,
        )
        meta = body["metadata"]
        where = f"job/{meta['namespace']}/{meta['name']}"
        try:
            if self._node_labels is None:
                node_obj = self.s.client.get_node(node)
                self._node_labels = dict(node_obj["metadata"].get("labels") or {})
            if not lands_on(body, node, self._node_labels):
                return [f"{where}: its node selector or required affinity excludes {node}"]
            try:
                created = self.s.client.create_job(meta["namespace"], body)
            except Conflict:  # made before a crash (or a name taken by someone else)
                created = self.s.client.get_job(meta["namespace"], meta["name"])
                if (created["metadata"].get("annotations") or {}).get(JOB_ID) != job_id:
                    return [f"{where} exists and is not this job's"]
            problems = job_volumes(self.s.client, created, node, self._node_labels)
        except KubeError as exc:
            return [f"{where}: {exc.message}"]
        self._created[job_id] = (meta["namespace"], meta["name"])
        if problems:
            self._emit(created, events.REFUSED, "preflight: " + "; ".join(problems), warning=True)
            return problems
        self._emit(
            created,
            events.ADMITTED,
            f"gpuherd job {job_id} ({name}) on node {node}: needs {job.vram}, priority "
            f"{job.priority}",
        )
        return []

    # --- the Launcher protocol ----------------------------------------------------------------
    def launch(
        self, job_id: JobId, job: JobSpec, *, gpu: GpuSpec, workdir: Path, log_dir: Path
    ) -> Handle:
        if KUBE_JOB in job.env:
            namespace, _, name = job.env[KUBE_JOB].partition("/")
        elif job_id in self._created:
            namespace, name = self._created[job_id]
        else:
            raise LaunchError("its Kubernetes Job was not prepared")
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            current = self._by_name(namespace, name)
            notes = current["metadata"].get("annotations") or {}
            ours = notes.get(JOB_ID) == job_id  # created by this broker for this job
            uid = current["metadata"]["uid"]
            if not ours and not self._admitted_here(current):
                raise LaunchError(f"job/{namespace}/{name}: another node's broker admitted it")
            spec = current.get("spec") or {}
            selector = dict(
                ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
            )
            selector[jobs.HOSTNAME] = self.s.node
            annotations: dict[str, str] = {JOB_ID: job_id}
            if spec.get("ttlSecondsAfterFinished") is not None:
                annotations[TTL] = str(spec["ttlSecondsAfterFinished"])
            # Pinned and unsuspended in one update: it can never start on another node. Its ttl
            # is ours from here: the Job stays until its result is recorded.
            self.s.client.patch_job(
                namespace,
                name,
                {
                    "metadata": {"annotations": annotations},
                    "spec": {
                        "suspend": False,
                        "ttlSecondsAfterFinished": None,
                        "template": {"spec": {"nodeSelector": selector}},
                    },
                },
            )
        except KubeError as exc:
            raise LaunchError(f"job/{namespace}/{name}: {exc.message}") from None
        self._created.pop(job_id, None)
        handle = Handle.of(
            self.name,
            namespace=namespace,
            name=name,
            uid=uid,
            out=str(log_dir / f"{job_id}.out"),
        )
        self._logs[uid] = _LogFollower(self, handle)
        return handle

    def _admitted_here(self, job: Obj) -> bool:
        """A queued Job this broker took: pinned here, or under a lease of ours, known to be
        ours without a request when taken or renewed lately (another broker takes a lease only
        once it has lapsed)."""
        if jobs.only_for(job, self.s.node):
            return True
        meta = job["metadata"]
        name = lease_name("job", meta["uid"])
        taken = self.s.job_leases.get(name)
        if taken is not None and time.monotonic() - taken < JOB_SECONDS - _LEASE_MARGIN:
            return True
        return holds(self.s.client, meta["namespace"], name, self.s.node)

    def _pods(self, handle: Handle, *, removed: bool = False) -> list[Obj]:
        """Its pods on this node (with those deleted lately, for how they ended)."""
        uid = handle.get("uid")
        found = list(self.s.pods.items()) + (self.s.pods.removed() if removed else [])
        return [
            p
            for p in found
            if any(
                o.get("uid") == uid for o in (p.get("metadata") or {}).get("ownerReferences") or []
            )
        ]

    def _exit_code(self, handle: Handle) -> int | None:
        codes = []
        for pod in self._pods(handle, removed=True):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                ended = (status.get("state") or {}).get("terminated")
                if ended is not None:
                    codes.append(int(ended.get("exitCode", 0)))
        failing = [c for c in codes if c != 0]
        return failing[-1] if failing else (codes[-1] if codes else None)

    def _save_logs(self, handle: Handle) -> None:
        """At its end: what the streams copied when each reached its pod's end; else every
        pod's whole log, read once more; where pods are gone, what the streams copied stays."""
        out = Path(handle.get("out"))
        follower = self._logs.pop(handle.get("uid"), None)
        if follower is not None:
            follower.close(wait=_LOG_DRAIN)
            names = {p["metadata"]["name"] for p in self._pods(handle, removed=True)}
            if names and names <= follower.whole:
                return  # every pod's log, whole, is in the file already
        texts, missing = [], []
        for pod in self._pods(handle):
            meta = pod["metadata"]
            try:
                texts.append(self.s.client.pod_log(meta["namespace"], meta["name"]))
            except KubeError as exc:
                missing.append(f"{meta['name']}: {exc.message}")
        if texts and not missing:
            out.write_text("".join(texts))
        elif follower is None or not follower.wrote:
            # Say so, rather than leave an empty log that looks like a silent job.
            why = "; ".join(missing) or "its pods were deleted before gpuherd read them"
            out.write_text("".join(texts) + f"gpuherd: the pod log could not be read ({why})\n")

    def poll(self, handle: Handle) -> Exited | None:
        job = self._job(handle)
        if job is None:  # gone, and nobody saw how it ended
            return Exited(None, reason="the Job was deleted and how it ended is unknown")
        outcome = jobs.ended(job)
        if outcome is None and not job.get("deleted"):
            return None
        code = self._exit_code(handle)
        if outcome is None:  # deleted before it ended: its pods go with it
            self._save_logs(handle)
            return Exited(code, reason="the Job was deleted before it ended")
        if code is None or (outcome == "Failed" and code == 0):
            code = 0 if outcome == "Complete" else 1
        self._save_logs(handle)
        return Exited(code, reason=jobs.timed_out(job))

    def stop(self, handle: Handle, *, grace: float) -> Exited:
        """End it for good: activeDeadlineSeconds 1 makes its controller fail it and end its
        pods with their grace (a suspended Job would wait, and could be admitted again)."""
        namespace, name = handle.get("namespace"), handle.get("name")
        with contextlib.suppress(NotFound):
            self.s.client.patch_job(
                namespace,
                name,
                {
                    "metadata": {"annotations": {STOPPED: f"by gpuherd on {self.s.node}"}},
                    "spec": {"activeDeadlineSeconds": 1},
                },
            )
        deadline = time.monotonic() + grace + 30
        while time.monotonic() < deadline:
            job = self._job(handle)
            pods = self._pods(handle)
            settled = all(
                (p.get("status") or {}).get("phase") in ("Succeeded", "Failed") for p in pods
            )
            if job is None or ((jobs.ended(job) or job.get("deleted")) and settled):
                break
            time.sleep(0.1)
        self._save_logs(handle)
        return Exited(self._exit_code(handle))

    def adopt(self, handle: Handle) -> bool:
        job = self._job(handle)
        running = job is not None and not job.get("deleted") and jobs.ended(job) is None
        if running and handle.get("uid") not in self._logs:
            self._logs[handle.get("uid")] = _LogFollower(self, handle)
        return running

    def find(self, job_id: JobId, log_dir: Path) -> Handle | None:
        for job in self.jobs.items():
            meta = job["metadata"]
            unsuspended = not (job.get("spec") or {}).get("suspend")
            if (meta.get("annotations") or {}).get(JOB_ID) == job_id and unsuspended:
                return Handle.of(
                    self.name,
                    namespace=meta["namespace"],
                    name=meta["name"],
                    uid=meta["uid"],
                    out=str(log_dir / f"{job_id}.out"),
                )
        return None

    def owns(self, handle: Handle, pid: int) -> bool:
        uid = read_origin(pid, self.s.proc_root).pod_uid
        return uid is not None and any(p["metadata"]["uid"] == uid for p in self._pods(handle))


class KubeModeLauncher:
    """Kubernetes Jobs through `KubeJobLauncher`, every other job as a local process."""

    name = "kubernetes"

    def __init__(self, kube: KubeJobLauncher, local: LocalLauncher) -> None:
        self.kube, self.local = kube, local

    def _for(self, handle: Handle) -> Launcher:
        return self.kube if handle.launcher == self.kube.name else self.local

    @staticmethod
    def _is_kube(job: JobSpec) -> bool:
        return KUBE_JOB in job.env or job.kubernetes is not None

    def prepare(self, job_id: JobId, name: str, job: JobSpec) -> list[str]:
        which: Launcher = self.kube if self._is_kube(job) else self.local
        return which.prepare(job_id, name, job)

    def launch(
        self, job_id: JobId, job: JobSpec, *, gpu: GpuSpec, workdir: Path, log_dir: Path
    ) -> Handle:
        which: Launcher = self.kube if self._is_kube(job) else self.local
        return which.launch(job_id, job, gpu=gpu, workdir=workdir, log_dir=log_dir)

    def poll(self, handle: Handle) -> Exited | None:
        return self._for(handle).poll(handle)

    def stop(self, handle: Handle, *, grace: float) -> Exited:
        return self._for(handle).stop(handle, grace=grace)

    def adopt(self, handle: Handle) -> bool:
        return self._for(handle).adopt(handle)

    def find(self, job_id: JobId, log_dir: Path) -> Handle | None:
        return self.kube.find(job_id, log_dir) or self.local.find(job_id, log_dir)

    def owns(self, handle: Handle, pid: int) -> bool:
        return self._for(handle).owns(handle, pid)


def kube_mode_launcher(on_exit: Callable[[], None] | None) -> KubeModeLauncher:
    """The registry's entry: the session `gpuherd serve --kubernetes` opened."""
    s = current()
    if s is None or s.jobs is None:
        raise RuntimeError("the kubernetes launcher needs the Kubernetes mode's session")
    return KubeModeLauncher(KubeJobLauncher(s, s.jobs), LocalLauncher(on_exit=on_exit))
