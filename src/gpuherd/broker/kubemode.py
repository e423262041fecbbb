"""The broker's Kubernetes mode: what it adds to the engine, in a thread of its own.

- Tenants: Deployments and StatefulSets annotated `gpuherd.io/vram`/`priority` with pods on
  this node (or released by it) become tenants beside the config's, read from their watches:
  idle, the mode makes no API request at all.
- Admission: a suspended, never-started Job labelled `gpuherd.io/queue` whose node selector
  and affinity admit this node is taken (under a Lease when other nodes could take it too: of
  two brokers, one wins), checked (its volumes must be reachable from this node) and queued in
  the journal like any job; the engine releases tenants and the Kubernetes launcher pins and
  unsuspends it.
- The GPU's claim: a Lease per GPU (node + UUID) while tenants on it are released, taken by
  the keeper before the first release, renewed from here, let go after the last restore
  (`gpuherd.k8s.gpulease`); a restarted broker on the node takes it over at start.
- Crash safety: at start, workloads annotated `released-by` this node for a job the journal
  does not know as running (a wiped journal) are scaled back from their annotations.
- Ends: once the journal holds the result of a Job this node ran, the Job gets a
  `GpuherdFinished` event and the `gpuherd.io/outcome` annotation, and is deleted after the ttl
  the launcher took over from it (a Job created from a config template that never started, at
  once).

The engine's config is frozen; the tenant table is swapped whole (one reference assignment,
atomic), so a step reading it mid-swap sees the old table or the new, never a half.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gpuherd.broker.journal import Journal
from gpuherd.broker.kubejob import KUBE_JOB, job_ref
from gpuherd.broker.records import JobRow
from gpuherd.broker.states import JobState, ReleaseState
from gpuherd.broker.submission import Submission
from gpuherd.ids import GpuName, JobId, JobName, TenantName
from gpuherd.k8s import annotations as notes
from gpuherd.k8s import events, leases, preflight, scaling
from gpuherd.k8s import jobs as kubejobs
from gpuherd.k8s.client import KubeError, NotFound
from gpuherd.k8s.gpulease import GpuLeases
from gpuherd.k8s.pods import Cache
from gpuherd.k8s.session import Session
from gpuherd.spec.model import Config, JobSpec, TenantSpec

Obj = dict[str, Any]
log = logging.getLogger(__name__)
# Between the turns of the brokers a Job may land on: long enough for the lease of the one
# whose turn came first to reach the others' watches before their own turn comes, also on a
# loaded API server (at 0.5 s, 50 brokers on one simulated server asked twice more per Job).
_TURN = 1.0
_RENEW_EVERY = 20.0
_END_POLL = 0.25  # while a Job ran here has ended and its result is not yet recorded


@dataclass
class KubeMode:
    session: Session
    jobs: Cache  # Jobs labelled gpuherd.io/queue
    config: Config
    journal: Journal
    wake: Callable[[], None] = lambda: None  # the daemon's: a job was queued
    settle: Callable[[], None] = lambda: None  # the keeper's: renew the GPUs' claims
    base_tenants: dict[TenantName, TenantSpec] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # annotations that could not be read
    node_labels: dict[str, str] = field(default_factory=dict)
    held: dict[str, tuple[str, JobId]] = field(default_factory=dict)  # uid -> (ns, job id)
    done: set[str] = field(default_factory=set)  # uids whose admission ended here
    warned: set[str] = field(default_factory=set)  # workloads already warned about
    reported: set[str] = field(default_factory=set)  # uids of Jobs whose end was reported
    deleted: set[str] = field(default_factory=set)  # uids of Jobs whose ttl ran out here

    def __post_init__(self) -> None:
        self.base_tenants = dict(self.config.tenants)
        self._changed = threading.Event()
        self._pods_changed = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, float] = {}  # uid -> when a Job that may land elsewhere was seen

    @property
    def node(self) -> str:
        return self.session.node

    @property
    def gpu(self) -> GpuName | None:
        return self.config.gpus[0].name if self.config.gpus else None

    # --- wiring ---------------------------------------------------------------------------
    def pods_changed(self) -> None:
        self._pods_changed = True
        self._changed.set()

    def jobs_changed(self) -> None:
        self._changed.set()

    def start(self) -> None:
        """Before the engine's first step: the node, the tenants, the annotations."""
        self.node_labels = dict(
            self.session.client.get_node(self.node)["metadata"].get("labels") or {}
        )
        for cache in (self.session.pods, self.jobs, *self.session.workloads.values()):
            cache.synced.wait(30)
        self.sync_tenants()
        self.restore_orphans()
        self.settle()  # a lease of this node's last broker: renewed or let go
        self._thread = threading.Thread(target=self._run, name="gpuherd-kube", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        wait = _RENEW_EVERY
        while not self._stop.is_set():
            self._changed.wait(wait)
            self._changed.clear()
            if self._stop.is_set():
                return
            try:
                if self._pods_changed:
                    self._pods_changed = False
                    self.sync_tenants()
                turn = self.admit()
                self.keep_leases()
                due = self.follow_ends()
                wait = _RENEW_EVERY if due is None else min(max(due, _END_POLL), _RENEW_EVERY)
                if turn is not None:
                    wait = min(wait, turn + 0.01)
            except KubeError as exc:  # the API server is away: the next change retries
                log.warning("kubernetes mode: %s", exc.message)
                self._stop.wait(1.0)
                self._changed.set()

    # --- tenants --------------------------------------------------------------------------
    def sync_tenants(self) -> None:
        here = {
            (p["metadata"].get("namespace"), lbl)
            for p in self.session.pods.items()
            for lbl in [tuple(sorted((p["metadata"].get("labels") or {}).items()))]
        }
        tenants = dict(self.base_tenants)
        skipped: list[str] = []
        for kind in ("Deployment", "StatefulSet"):
            cache = self.session.workloads.get(kind)
            found = cache.items() if cache else self.session.client.list_workloads(kind)
            for w in found:
                if not notes.is_tenant(w) or not self._on_this_node(w, here):
                    continue
                spec = notes.tenant_spec(w, kind, self.gpu, skipped)
                name = TenantName(notes.tenant_name(w))
                self._watch_for_argo(w, kind, name)
                if spec is not None and name not in self.base_tenants:
                    tenants[name] = spec
        self.skipped = skipped
        if tenants != self.config.tenants:
            object.__setattr__(self.config, "tenants", tenants)  # see the module docstring

    def _watch_for_argo(self, w: Obj, kind: str, tenant: TenantName) -> None:
        """Warn once about a tenant Argo CD tracks; say so when it scaled one we released."""
        meta = w["metadata"]
        where = f"{kind.lower()}/{meta['namespace']}/{meta['name']}"
        if not notes.argo_tracked(w):
            return
        if where not in self.warned:
            self.warned.add(where)
            self.journal.record(
                "argocd_tracked",
                f"{where} is tracked by Argo CD: self-heal scales it back while released unless "
                "its Application ignores /spec/replicas (ignoreDifferences)",
                tenant=tenant,
            )
        released = (scaling.released_by(w) or ("", ""))[0]
        replicas = int((w.get("spec") or {}).get("replicas") or 0)
        held_down = any(  # released, and no restore of ours under way
            r.tenant == tenant and r.state is ReleaseState.RELEASED
            for r in self.journal.releases(open_only=True)
        )
        if (
            released == self.node
            and replicas > 0
            and held_down
            and f"{where}/healed" not in self.warned
        ):
            self.warned.add(f"{where}/healed")
            self.journal.record(
                "argocd_scaled_back",
                f"{where} was released by {self.node} but has {replicas} replicas again: "
                "another controller (Argo CD self-heal?) scaled it back",
                tenant=tenant,
            )

    def _on_this_node(self, w: Obj, here: set[tuple[Any, tuple[tuple[str, str], ...]]]) -> bool:
        meta = w["metadata"]
        if (scaling.released_by(w) or ("", ""))[0] == self.node:
            return True
        want = ((w.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return any(
            ns == meta["namespace"] and all(dict(labels).get(k) == v for k, v in want.items())
            for ns, labels in here
        )

    def restore_orphans(self) -> None:
        """Workloads this node released for a job the journal does not follow (finished,
        unknown, or a journal wiped with its hostPath): scale them back from the annotations."""
        open_jobs = {r.id for r in self.journal.jobs()}
        journaled = {r.detail.get("workload") for r in self.journal.pending_restores()}
        for ref, job, replicas in scaling.released_here(self.session.client, self.node):
            if job in open_jobs or str(ref) in journaled:
                continue  # the engine's replay restores it from the journal
            self.journal.record(
                "restore_orphan",
                f"{ref} released by {self.node}/{job}: "
                f"restoring {replicas} replicas from its annotations",
            )
            involved = events.reference("apps/v1", ref.kind, ref.namespace, ref.name, None)
            try:
                scaling.restore(self.session.client, ref, replicas=replicas, keda=None, timeout=120)
            except KubeError as exc:
                self.journal.record("restore_failed", f"{ref}: {exc.message}")
                self._emit(involved, events.RESTORE_FAILED, exc.message, warning=True)
            else:
                self._emit(
                    involved,
                    events.RESTORED,
                    f"restored to {replicas} replicas from its annotations by node {self.node} "
                    f"(released for job {job}, which this broker's journal does not follow)",
                )

    def _emit(self, involved: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        if self.session.events is not None:
            self.session.events.emit(involved, reason, message, warning=warning)

    # --- admission ------------------------------------------------------------------------
    def admit(self) -> float | None:
        """Take the queued Jobs this broker should admit; returns the seconds until a Job that
        may land elsewhere too is this broker's turn (None: nothing is waiting for one).

        A Job only this node can run is taken at once. One that could land on other nodes
        too is asked for only by a broker with no job of its own in flight, only while no other
        broker holds its lease (the lease watch says so, without a request), and in its turn:
        the nodes the Job may land on (the node watch) are ranked by a hash of the Job and the
        node, the first asks at once, each next one _TURN later if the Job is still free. So
        the Jobs spread over idle nodes, a request or two each, and a Job that only this node
        can take, or that no other node's broker is free for, waits for no one."""
        now, wall = time.monotonic(), time.time()
        turn: float | None = None
        busy = self._busy()
        watched = self.session.leases  # gpuherd's leases, as the watch last saw them
        for job in self.jobs.items():
            meta = job["metadata"]
            uid = meta["uid"]
            if uid in self.held or uid in self.done or not notes.waiting_for_admission(job):
                continue
            if not notes.lands_on(job, self.node, self.node_labels):
                continue
            lease = leases.lease_name("job", uid)
            only_here = kubejobs.only_for(job, self.node)  # no other broker could take it
            if not only_here:
                seen = watched.get(meta["namespace"], lease) if watched is not None else None
                if busy or (seen is not None and leases.held_by_other(seen, self.node, wall)):
                    continue
                due = self._seen.setdefault(uid, now) + _TURN * self._rank(job, uid)
                if now < due:
                    turn = due - now if turn is None else min(turn, due - now)
                    continue
                if not leases.acquire(
                    self.session.client,
                    meta["namespace"],
                    lease,
                    self.node,
                    seconds=leases.JOB_SECONDS,
                    create_only=seen is None,
                ):
                    continue  # another broker has it
                self.session.job_leases[lease] = time.monotonic()
            job_id = self._queue(job)
            if job_id:
                self.held[uid] = (meta["namespace"], job_id)
                busy = True
            elif not only_here:  # refused before it was queued
                self._let_go(meta["namespace"], lease)
        return turn

    def _let_go(self, namespace: str, lease: str) -> None:
        if self.session.job_leases.pop(lease, None) is not None:
            leases.release(self.session.client, namespace, lease)

    def _busy(self) -> bool:
        """A job admitted here has not ended: the GPU is promised, another Job would wait."""
        for _ns, job_id in self.held.values():
            row = self.journal.job(job_id)
            if row is not None and not row.state.final:
                return True
        return False

    def _rank(self, job: Obj, uid: str) -> int:
        """This node's place among the nodes the Job may land on (0: first to ask)."""
        cache = self.session.nodes
        nodes = {self.node}
        for node in cache.items() if cache is not None else []:
            meta = node["metadata"]
            gpus = ((node.get("status") or {}).get("capacity") or {}).get("nvidia.com/gpu")
            if gpus in (None, "0"):
                continue  # no GPU, so no broker: none to wait for
            if notes.lands_on(job, meta["name"], dict(meta.get("labels") or {})):
                nodes.add(meta["name"])
        return sorted(nodes, key=lambda n: _score(uid, n)).index(self.node)

    def _queue(self, job: Obj) -> JobId:
        meta = job["metadata"]
        vram, priority, deadline = notes.job_request(job)
        try:
            spec = JobSpec.model_validate(
                {
                    "gpu": self.gpu,
                    "vram": vram,
                    "priority": priority,
                    "command": ["kubernetes-job", f"{meta['namespace']}/{meta['name']}"],
                    "env": {KUBE_JOB: f"{meta['namespace']}/{meta['name']}"},
                    "success": notes.job_checks(job),
                    **({"timeout": deadline} if deadline else {}),
                }
            )
        except ValidationError as exc:  # a bad annotation: refused with the reason, once
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            problem = f"annotation {where}: {first['msg']}"
            self._refuse(job, problem)
            self.done.add(meta["uid"])
            return JobId("")
        submission = Submission(job=JobName(meta["name"]), adhoc=spec, key=f"k8s-job-{meta['uid']}")
        job_id = self.journal.submit(submission)
        problems = preflight.job_volumes(self.session.client, job, self.node, self.node_labels)
        if problems:  # before any tenant is touched
            reason = "preflight: " + "; ".join(problems)
            self.journal.set_job_state(
                job_id, JobState.FAILED, reason=reason, expect=(JobState.QUEUED,)
            )
            self._refuse(job, reason)
        else:
            self._emit(
                job_ref(job),
                events.ADMITTED,
                f"gpuherd job {job_id} on node {self.node}: needs {vram}, priority {priority}",
            )
            self.wake()
        return job_id

    def _refuse(self, job: Obj, reason: str) -> None:
        meta = job["metadata"]
        self._emit(job_ref(job), events.REFUSED, reason, warning=True)
        with contextlib.suppress(KubeError):
            self.session.client.patch_job(
                meta["namespace"],
                meta["name"],
                {"metadata": {"annotations": {notes.REFUSED: reason[:1000]}}},
            )

    def keep_leases(self) -> None:
        """Renew the leases of jobs still queued here once they are _RENEW_EVERY old (one
        just taken needs none); give up those of jobs that ended; renew the GPUs' claims."""
        now = time.monotonic()
        for uid, (namespace, job_id) in list(self.held.items()):
            row = self.journal.job(job_id)
            name = leases.lease_name("job", uid)
            taken = self.session.job_leases.get(name)
            if row is None or row.state.final:
                self._let_go(namespace, name)
                del self.held[uid]
                self.done.add(uid)
            elif taken is not None and row.state is JobState.QUEUED and now - taken >= _RENEW_EVERY:
                watched = self.session.leases
                seen = watched.get(namespace, name) if watched is not None else None
                if leases.acquire(
                    self.session.client,
                    namespace,
                    name,
                    self.node,
                    seconds=leases.JOB_SECONDS,
                    seen=seen,  # one PUT at the version the watch shows
                ):
                    self.session.job_leases[name] = now
                else:  # lost (it lapsed, another broker took it): the launcher will not start it
                    del self.session.job_leases[name]
        self.settle()

    # --- ends -----------------------------------------------------------------------------
    def follow_ends(self) -> float | None:
        """Jobs this node ran whose result the journal holds: report it once (event and
        annotation), then apply the Job's ttl. Returns the seconds until something here is
        due (a result about to be recorded, a ttl running out), None when nothing is."""
        now, due = time.time(), None
        seen = set()
        for job in self.jobs.items():
            if not kubejobs.ours(job, self.node):
                continue
            meta = job["metadata"]
            seen.add(meta["uid"])
            if meta["uid"] in self.deleted:
                continue  # asked to go already; the watch shows it soon
            note = meta.get("annotations") or {}
            row = self.journal.job(str(note[notes.JOB_ID]))
            if row is not None and not row.state.final:
                # Ended in the cluster, or created here and not yet started (it starts, or its
                # job ends, within this engine step): the record follows soon.
                if kubejobs.ended(job) or not kubejobs.started(job):
                    due = min(due or _END_POLL, _END_POLL)
                continue
            # Once: the annotation says so across restarts, the set until the watch shows it.
            if row is not None and notes.OUTCOME not in note and meta["uid"] not in self.reported:
                self.reported.add(meta["uid"])
                self._report(job, row)
            if not kubejobs.started(job):  # created here, never ran, never will
                self._delete(job)
                continue
            ended_at = kubejobs.ended_at(job)
            if notes.TTL not in note or ended_at is None:
                continue
            left = ended_at + float(note[notes.TTL]) - now
            if left <= 0:
                self._delete(job)
            else:
                due = left if due is None else min(due, left)
        self.reported &= seen  # Jobs gone from the watch need no memory
        self.deleted &= seen
        return due

    def _report(self, job: Obj, row: JobRow) -> None:
        outcome = str(row.state)
        text = f"{outcome}: {row.reason}" if row.reason else outcome
        code = "" if row.exit_code is None else f", exit code {row.exit_code}"
        self._emit(
            job_ref(job),
            events.FINISHED,
            f"gpuherd job {row.id} {text}{code}",
            warning=row.state is not JobState.SUCCEEDED,
        )
        meta = job["metadata"]
        with contextlib.suppress(KubeError):
            self.session.client.patch_job(
                meta["namespace"],
                meta["name"],
                {"metadata": {"annotations": {notes.OUTCOME: text[:1000]}}},
            )

    def _delete(self, job: Obj) -> None:
        meta = job["metadata"]
        with contextlib.suppress(NotFound):  # another error: the next pass tries again
            self.session.client.delete_job(meta["namespace"], meta["name"])
        self.deleted.add(meta["uid"])


@dataclass
class GpuLeaseClaim:
    """The keeper's claim on a GPU (`broker.claims`) as this node's GPU leases: `uuids` maps
    the broker's GPU names to the devices' UUIDs the leases are named by."""

    leases: GpuLeases
    uuids: Mapping[GpuName, str]

    def _of(self, gpu: GpuName | None) -> list[str]:
        return [u for name, u in self.uuids.items() if gpu is None or name == gpu]

    def hold(self, gpu: GpuName | None) -> str | None:
        for uuid in self._of(gpu):
            try:
                if not self.leases.hold(uuid):
                    return f"the lease of GPU {uuid} on node {self.leases.node} is held by another"
            except KubeError as exc:
                return f"the lease of GPU {uuid} could not be taken: {exc.message}"
        return None

    def settle(self, released: set[GpuName | None]) -> None:
        try:
            self.leases.keep({u for gpu in released for u in self._of(gpu)})
        except KubeError as exc:  # the next pass renews or lets go
            log.warning("kubernetes mode: GPU leases: %s", exc.message)


def _score(uid: str, node: str) -> int:
    """A node's place for a Job (rendezvous hashing): every broker ranks the nodes alike."""
    return int.from_bytes(hashlib.sha256(f"{uid}/{node}".encode()).digest()[:8], "big")
