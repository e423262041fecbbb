"""Jobs as Kubernetes Jobs: the Job exists, suspended; launching it pins it to this node and
unsuspends it (the Job API lets a suspended, never-started Job's node selector change). Its
pods are followed through the node's pod watch, its end through the queued-Jobs watch: no
polling. Its pods' logs are copied to the job's log file when it ends.

`KubeModeLauncher` is the launcher of the Kubernetes mode: Kubernetes Jobs here, anything
submitted with a command (`gpuherd submit`) as local processes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpuherd.broker.launcher import Exited, Launcher, LaunchError
from gpuherd.broker.local import LocalLauncher
from gpuherd.broker.records import Handle
from gpuherd.gpu.attribution import read_origin
from gpuherd.ids import JobId
from gpuherd.k8s.annotations import JOB_ID
from gpuherd.k8s.client import KubeError, NotFound
from gpuherd.k8s.leases import holds, lease_name
from gpuherd.k8s.session import Session, current
from gpuherd.spec.model import GpuSpec, JobSpec

Obj = dict[str, Any]
KUBE_JOB = "GPUHERD_KUBE_JOB"  # in a queued job's env: NAMESPACE/NAME of its Kubernetes Job
_HOSTNAME = "kubernetes.io/hostname"


def _ended(job: Obj) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


class KubeJobLauncher:
    name = "kubejob"

    def __init__(self, session: Session, jobs: Any) -> None:
        self.s = session
        self.jobs = jobs  # the queued-Jobs cache (gpuherd.k8s.pods.Cache)

    def _job(self, handle: Handle) -> Obj | None:
        uid = handle.get("uid")
        for job in self.jobs.items():
            if job["metadata"]["uid"] == uid:
                return dict(job)
        try:  # not (yet) in the cache: ask once
            job = self.s.client.get_job(handle.get("namespace"), handle.get("name"))
        except NotFound:
            return None
        return job if job["metadata"]["uid"] == uid else None

    def launch(
        self, job_id: JobId, job: JobSpec, *, gpu: GpuSpec, workdir: Path, log_dir: Path
    ) -> Handle:
        namespace, _, name = job.env[KUBE_JOB].partition("/")
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        current = next(
            (
                j
                for j in self.jobs.items()
                if j["metadata"]["name"] == name and j["metadata"]["namespace"] == namespace
            ),
            None,
        )
        try:
            if current is None:
                current = self.s.client.get_job(namespace, name)
            if not holds(
                self.s.client, namespace, lease_name("job", current["metadata"]["uid"]), self.s.node
            ):
                raise LaunchError(f"job/{namespace}/{name}: another node's broker admitted it")
            selector = dict(
                (((current.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
                    "nodeSelector"
                )
                or {}
            )
            selector[_HOSTNAME] = self.s.node
            # Pinned and unsuspended in one update: it can never start on another node.
            self.s.client.patch_job(
                namespace,
                name,
                {
                    "metadata": {"annotations": {JOB_ID: job_id}},
                    "spec": {"suspend": False, "template": {"spec": {"nodeSelector": selector}}},
                },
            )
        except KubeError as exc:
            raise LaunchError(f"job/{namespace}/{name}: {exc.message}") from None
        return Handle.of(
            self.name,
            namespace=namespace,
            name=name,
            uid=current["metadata"]["uid"],
            out=str(log_dir / f"{job_id}.out"),
        )

    def _pods(self, handle: Handle) -> list[Obj]:
        uid = handle.get("uid")
        return [
            p
            for p in self.s.pods.items()
            if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])
        ]

    def _exit_code(self, handle: Handle) -> int | None:
        codes = []
        for pod in self._pods(handle):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                ended = (status.get("state") or {}).get("terminated")
                if ended is not None:
                    codes.append(int(ended.get("exitCode", 0)))
        failing = [c for c in codes if c != 0]
        return failing[-1] if failing else (codes[-1] if codes else None)

    def _save_logs(self, handle: Handle) -> None:
        out = Path(handle.get("out"))
        texts = []
        for pod in self._pods(handle):
            meta = pod["metadata"]
            with contextlib.suppress(KubeError):
                texts.append(self.s.client.pod_log(meta["namespace"], meta["name"]))
        if texts:
            out.write_text("".join(texts))

    def poll(self, handle: Handle) -> Exited | None:
        job = self._job(handle)
        if job is None:
            return Exited(None)  # deleted under us
        outcome = _ended(job)
        if outcome is None:
            return None
        code = self._exit_code(handle)
        if code is None:
            code = 0 if outcome == "Complete" else 1
        self._save_logs(handle)
        return Exited(code)

    def stop(self, handle: Handle, *, grace: float) -> Exited:
        namespace, name = handle.get("namespace"), handle.get("name")
        with contextlib.suppress(NotFound):
            # Suspending a running Job makes its controller end the pods with their grace.
            self.s.client.patch_job(namespace, name, {"spec": {"suspend": True}})
        deadline = time.monotonic() + grace + 30
        while self._pods(handle) and time.monotonic() < deadline:
            if all(
                (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                for p in self._pods(handle)
            ):
                break
            time.sleep(0.2)
        self._save_logs(handle)
        return Exited(self._exit_code(handle))

    def adopt(self, handle: Handle) -> bool:
        job = self._job(handle)
        return job is not None and _ended(job) is None

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

    def launch(
        self, job_id: JobId, job: JobSpec, *, gpu: GpuSpec, workdir: Path, log_dir: Path
    ) -> Handle:
        which: Launcher = self.kube if KUBE_JOB in job.env else self.local
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
