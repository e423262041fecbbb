"""After an accepted journal loss, bring back what the host alone can tell.

The journal said which tenants were released and how to bring each back; without it, the
tenants of the config are still what should be running. A tenant none of whose processes runs
on the host (its `match` finds nothing), with a method that starts it without knowing what the
release did (`signal` with a `start` command, `command` with its `restore`), is journaled as
released under the row `journal-loss`, so the broker's usual recovery restores it at start,
checking its room and its health like any restore. Everything else is recorded as an event a
person can act on: a tenant absent with no way to start it, and one that runs but holds no GPU
memory (an app-native release such as an Ollama unload leaves the server up; what it had loaded
is not known any more).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from gpuherd.broker.journal import Journal
from gpuherd.broker.records import RestorePlan
from gpuherd.gpu.attribution import attribute
from gpuherd.gpu.base import GpuProcess, GpuSnapshot
from gpuherd.gpu.procinfo import read_cmdline
from gpuherd.ids import GpuUuid, JobId, TenantName
from gpuherd.spec.model import CommandMethod, Config, SignalMethod, TenantSpec

LOSS_JOB = JobId("journal-loss")


@dataclass
class Rebuilt:
    restoring: list[TenantName] = field(default_factory=list)  # journaled for recovery
    unknown: list[str] = field(default_factory=list)  # what a person must check, and why


def host_tenants(config: Config) -> set[TenantName]:
    """The tenants with at least one process on this host, GPU or not (their `match`)."""
    me = os.getpid()
    procs = tuple(
        GpuProcess(gpu_index=-1, gpu_uuid=GpuUuid("host"), pid=pid, used_bytes=0, cmdline=cmdline)
        for pid in (int(e) for e in os.listdir("/proc") if e.isdigit())
        if pid != me and (cmdline := read_cmdline(pid))
    )
    snap = GpuSnapshot(backend="host", taken_at=time.time(), devices=(), processes=procs)
    return {TenantName(a.tenant) for a in attribute(snap, config.tenants) if a.tenant}


def _starter(spec: TenantSpec) -> int | None:
    """The first method that brings the tenant back from nothing: its index, or None."""
    for index, method in enumerate(spec.preempt):
        if isinstance(method, CommandMethod) or (isinstance(method, SignalMethod) and method.start):
            return index
    return None


def rebuild(config: Config, journal: Journal, snap: GpuSnapshot) -> Rebuilt:
    on_host = host_tenants(config)
    on_gpu = {TenantName(a.tenant) for a in attribute(snap, config.tenants) if a.tenant}
    out = Rebuilt()
    for name, spec in config.tenants.items():
        if spec.match is None or spec.match.pod is not None:
            continue  # unfindable here (Kubernetes tenants come back from their annotations)
        if name in on_gpu:
            continue
        if name in on_host:
            out.unknown.append(
                f"{name} runs but holds no GPU memory: it may have been released before the "
                "journal was lost; check it (an Ollama model to load again, a server to wake)"
            )
            continue
        index = _starter(spec)
        if index is None:
            out.unknown.append(
                f"{name} is not running and none of its methods can start it: start it by hand"
            )
            continue
        if not out.restoring:
            journal.guard_job(LOSS_JOB, reason="journal lost")  # born ended: never run
        release = journal.release_intent(LOSS_JOB, name, RestorePlan(tenant=spec, index=index))
        journal.mark_released(release, detail={"rebuilt": "journal lost; absent at start"})
        out.restoring.append(name)
    for line in out.unknown:
        journal.record("journal_loss_check", line)
    if out.restoring:
        names = ", ".join(out.restoring)
        journal.record("journal_loss_restore", f"not running after the journal loss: {names}")
    return out
