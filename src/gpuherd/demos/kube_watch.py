"""What `gpuherd demo --kubernetes` shows while its story runs: the objects as gpuherd's
Kubernetes client reads them, the GPUs as the brokers' backend reads them, and the brokers'
journals through their sockets; each change as one timed line.

It polls (every POLL seconds) rather than watches: a handful of small reads a poll, and a line
per change is all the narrative needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console
from rich.markup import escape

from gpuherd.api.client import BrokerRefused, BrokerUnreachable, Client
from gpuherd.demos.kube_objects import GPUS, HOSTNAME, RENDER_NODE
from gpuherd.demos.processes import DemoFailed, Procs
from gpuherd.gpu.sim import SimHost
from gpuherd.units import format_bytes

if TYPE_CHECKING:  # the client needs the `kubernetes` package: imported once it is known there
    from gpuherd.k8s.client import KubeClient

Obj = dict[str, Any]
GIB = 1024**3
POLL = 0.15  # seconds between reads


@dataclass
class Story:
    """What the user sees (nothing with `--json`), and the steps `--json` returns. A step's
    time counts from `clock` once set (the Job's creation), from the start before."""

    out: Console | None
    t0: float = field(default_factory=time.monotonic)
    clock: float | None = None
    steps: list[Obj] = field(default_factory=list)

    def say(self, text: str) -> None:
        if self.out is not None:
            self.out.print(text, markup=False)

    def cmd(self, text: str) -> None:
        if self.out is not None:
            self.out.print(f"[bold]$ {escape(text)}[/]")

    def block(self, obj: Obj) -> None:
        """An excerpt of a manifest, as YAML."""
        text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=None, width=200)
        for line in text.rstrip().splitlines():
            self.say(f"    {line}")

    def rule(self, text: str) -> None:
        if self.out is not None:
            self.out.rule(text)

    def step(self, what: str, **facts: Any) -> None:
        at = time.monotonic() - (self.clock if self.clock is not None else self.t0)
        self.steps.append({"at": round(at, 3), "what": what, **facts})
        self.say(f"  +{at:5.2f}s  {what}")


def replicas(d: Obj) -> tuple[int, int]:
    """(spec.replicas, status.readyReplicas)."""
    status = d.get("status") or {}
    return int(d["spec"].get("replicas") or 0), int(status.get("readyReplicas") or 0)


def gpuherd_notes(obj: Obj) -> dict[str, str]:
    notes = obj["metadata"].get("annotations") or {}
    return {k: str(v) for k, v in notes.items() if k.startswith("gpuherd.io/")}


def written(obj: Obj, declared: dict[str, str]) -> dict[str, str]:
    """The gpuherd.io annotations a broker wrote (not those of the manifest)."""
    return {k: v for k, v in gpuherd_notes(obj).items() if declared.get(k) != v}


def ended(job: Obj) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def gpu_line(index: int, used: int, total: int) -> str:
    node, name, _ = GPUS[index]
    return (
        f"GPU {index} on {node} ({name}): {format_bytes(used)} used, "
        f"{format_bytes(total - used)} free of {format_bytes(total)}"
    )


def wait(what: str, timeout: float, check: Callable[[], Any], procs: Procs) -> Any:
    """Poll `check` until it answers something true; DemoFailed naming `what` at `timeout`
    or when a process the demo started has died."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        procs.check_alive()
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


@dataclass
class Cluster:
    """The cluster through gpuherd's Kubernetes client, and its GPUs through the simulated
    backend (what NVML tells a broker on a real node)."""

    kc: KubeClient
    sim_dir: Path

    def create(self, body: Obj) -> Obj:
        """What `kubectl apply` of a new object does (counted, errors as KubeError)."""
        plural = f"{body['kind'].lower()}s"  # namespaces, deployments, cronjobs, jobs
        return self.kc.create(body["apiVersion"], plural, body["metadata"].get("namespace"), body)

    def deployment(self, ns: str, name: str) -> Obj:
        from gpuherd.k8s.client import Ref

        return self.kc.get_workload(Ref("Deployment", ns, name))

    def job(self, ns: str, name: str) -> Obj:
        return self.kc.get_job(ns, name)

    def pods(self, ns: str, labels: str) -> list[Obj]:
        return list(self.kc.list_pods(namespace=ns, labels=labels).get("items") or [])

    def gpus(self) -> dict[int, tuple[int, int]]:
        """GPU index -> (used, total) bytes."""
        with SimHost(self.sim_dir) as host:
            return {d.index: (d.memory_used, d.memory_total) for d in host.snapshot().devices}

    def gpu_leases(self) -> dict[str, str]:
        """The brokers' GPU leases (held while tenants on a GPU are released): name -> holder."""
        from gpuherd.k8s import leases
        from gpuherd.k8s.gpulease import NODE_LABEL

        found = self.kc.list_objects("leases", labels=f"{leases.MANAGED_BY},{NODE_LABEL}")
        return {
            str(x["metadata"]["name"]): str(leases.holder(x)[0]) for x in found.get("items") or []
        }


# A broker event in the story's words ({dt}: seconds since the step it ends began).
_WORDS = {
    "submitted": "queued the Job as gpuherd job {job}",
    "release_intent": "journaled the intent: release {tenant} (scale to zero)",
    "released": "{tenant} released: its memory is free on the GPU, {dt:.2f}s after the intent",
    "job_running": "the render runs",
    "restore_started": "restoring {tenant} (scale back)",
    "restored": "{tenant} restored and Ready, {dt:.2f}s after the restore began",
    "job_succeeded": "job {job} succeeded (journaled)",
    "job_failed": "job {job} failed",
}
_BEGAN = {"released": "release_intent", "restored": "restore_started"}


@dataclass
class Brokers:
    """Each node's broker through its socket. Its journal's events are read as they are
    written (its stdout has them only after each engine step)."""

    clients: dict[str, Client]
    events: dict[str, list[Obj]] = field(default_factory=dict)
    _seen: set[tuple[Any, ...]] = field(default_factory=set)

    def poll(self, story: Story) -> None:
        for node, client in self.clients.items():
            got = self.events.setdefault(node, [])
            try:
                fresh = client.events(since=got[-1]["at"] if got else 0.0)
            except (BrokerUnreachable, BrokerRefused) as exc:
                raise DemoFailed(f"the broker on {node}: {exc}") from None
            for event in fresh:
                key = (event["at"], event["kind"], event.get("job"), event.get("tenant"))
                if (node, *key) not in self._seen:
                    self._seen.add((node, *key))
                    got.append(event)
                    self._tell(story, node, event)

    def _tell(self, story: Story, node: str, event: Obj) -> None:
        kind = str(event["kind"])
        if kind not in _WORDS:
            return
        began = next(
            (
                float(e["at"])
                for e in reversed(self.events[node])
                if e["kind"] == _BEGAN.get(kind) and e.get("tenant") == event.get("tenant")
            ),
            None,
        )
        dt = float(event["at"]) - began if began is not None else 0.0
        words = _WORDS[kind].format(tenant=event.get("tenant"), job=event.get("job"), dt=dt)
        story.step(f"broker on {node}: {words}", broker=node, event=kind, seconds=round(dt, 3))

    def seconds(self, node: str, kind: str) -> float | None:
        """How long the first `kind` step (`released`, `restored`) took on `node`."""
        events = self.events.get(node, [])
        end = next((e for e in events if e["kind"] == kind), None)
        start = next((e for e in events if e["kind"] == _BEGAN[kind]), None)
        return None if end is None or start is None else float(end["at"]) - float(start["at"])

    def taker(self) -> tuple[str, float] | None:
        """The node whose broker queued the Job (one Job in the story), and when (epoch)."""
        for node, events in self.events.items():
            for e in events:
                if e["kind"] == "submitted":
                    return node, float(e["at"])
        return None

    def released(self, node: str) -> list[str]:
        return [str(e.get("tenant")) for e in self.events.get(node, []) if e["kind"] == "released"]

    def tenants(self, node: str) -> dict[str, str]:
        """Tenant -> state, from `gpuherd status` of that node's broker."""
        try:
            status = self.clients[node].status()
        except (BrokerUnreachable, BrokerRefused) as exc:
            raise DemoFailed(f"the broker on {node}: {exc}") from None
        return {str(t["name"]): str(t["state"]) for t in status.get("tenants") or []}

    def jobs(self, node: str) -> list[Obj]:
        """`gpuherd jobs --all` of that node's broker."""
        try:
            return self.clients[node].jobs(include_ended=True)
        except (BrokerUnreachable, BrokerRefused) as exc:
            raise DemoFailed(f"the broker on {node}: {exc}") from None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@dataclass
class Follow:
    """The story from the Job's creation to Ollama back: what was last seen of each object
    followed, a line for each change, and when each milestone came (`marks`)."""

    cluster: Cluster
    story: Story
    brokers: Brokers
    job: Obj  # as created
    declared: dict[str, str]  # the Job's own gpuherd.io annotations
    ollama_declared: dict[str, str]
    holder: str | None = None  # the node whose broker took the Job
    gpu_leases: dict[str, str] = field(default_factory=dict)
    replicas: tuple[int, int] = (1, 1)
    history: list[int] = field(default_factory=lambda: [1])  # ollama's spec.replicas
    ollama_notes: dict[str, str] = field(default_factory=dict)
    released_notes: dict[str, str] = field(default_factory=dict)
    free: int | None = None
    suspended: bool = True
    job_notes: dict[str, str] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)
    condition: str | None = None
    marks: dict[str, float] = field(default_factory=dict)
    last: Obj = field(default_factory=dict)  # the Job as last read

    @property
    def name(self) -> str:
        return str(self.job["metadata"]["name"])

    @property
    def ns(self) -> str:
        return str(self.job["metadata"]["namespace"])

    def once(self) -> None:
        # The cluster first, the brokers' journals after: a broker journals what it does before
        # the API shows it, so its steps are told before their effects.
        held = self.cluster.gpu_leases()
        ollama = self.cluster.deployment("ollama", "ollama")
        self.brokers.poll(self.story)
        self._lease(held)
        self._ollama(ollama)
        self._gpu()
        self._job()
        self._leases_gone(held)

    def _mark(self, what: str) -> None:
        self.marks.setdefault(what, time.monotonic())

    def _lease(self, held: dict[str, str]) -> None:
        if self.holder is None:
            taken = self.brokers.taker()
            if taken is not None:
                self.holder, at = taken
                # When its broker queued it (an event read a poll later), on the story's clock.
                self.marks.setdefault("admitted", time.monotonic() - max(time.time() - at, 0.0))
                self.story.step(
                    f"the broker on {self.holder} took the Job (its nodeSelector names "
                    f"{RENDER_NODE}: no other broker asks, so no Job lease is needed)",
                    holder=self.holder,
                )
        for name, who in held.items():
            if name not in self.gpu_leases:
                self.story.step(
                    f"lease {name} held by {who}: tenants on its GPU are released",
                    lease=name,
                )
                self.gpu_leases[name] = who

    def _leases_gone(self, held: dict[str, str]) -> None:
        """Told after the restore's own steps."""
        for name in sorted(set(self.gpu_leases) - set(held)):
            self.story.step(f"lease {name} let go: the GPU's tenants are back", lease=name)
            del self.gpu_leases[name]

    def _ollama(self, d: Obj) -> None:
        notes = written(d, self.ollama_declared)
        if notes != self.ollama_notes:
            added = {k: v for k, v in notes.items() if self.ollama_notes.get(k) != v}
            if added:
                self.released_notes.update(added)
                text = " ".join(f"{k}={v}" for k, v in added.items())
                self.story.step(f"deployment/ollama annotated {text}", annotations=added)
            elif not notes:
                self._mark("ollama_notes_removed")
                self.story.step("deployment/ollama: gpuherd's annotations removed")
            self.ollama_notes = notes
        now = replicas(d)
        if now[0] != self.replicas[0]:
            self.story.step(
                f"deployment/ollama replicas {self.replicas[0]} -> {now[0]}", replicas=now[0]
            )
            self.history.append(now[0])
            self._mark(f"ollama_scaled_to_{now[0]}")
        if now[1] != self.replicas[1]:
            self.story.step(f"deployment/ollama READY {now[1]}/{now[0]}", ready=now[1])
            self._mark("ollama_down" if now[1] == 0 else "ollama_ready_again")
        self.replicas = now

    def _gpu(self) -> None:
        used, total = self.cluster.gpus()[0]
        if self.free is not None and abs(total - used - self.free) < GIB // 2:
            return
        if self.free is not None:
            self.story.step(gpu_line(0, used, total), free_bytes=total - used)
        self.free = total - used

    def _job(self) -> None:
        job = self.last = self.cluster.job(self.ns, self.name)
        if bool(job["spec"].get("suspend")) != self.suspended:
            self.suspended = not self.suspended
            node = (job["spec"]["template"]["spec"].get("nodeSelector") or {}).get(HOSTNAME)
            self._mark("job_unsuspended")
            self.story.step(f"job/{self.name} unsuspended, pinned to {node}", node=node)
        notes = written(job, self.declared)
        added = {k: v for k, v in notes.items() if self.job_notes.get(k) != v}
        if added:
            text = " ".join(f"{k}={v}" for k, v in added.items())
            self.story.step(f"job/{self.name} annotated {text}", annotations=added)
        self.job_notes = notes
        for pod in self.cluster.pods(self.ns, f"job-name={self.name}"):
            pod_name = pod["metadata"]["name"]
            phase = str((pod.get("status") or {}).get("phase") or "Pending")
            if self.pods.get(pod_name) != phase:
                self.pods[pod_name] = phase
                node = pod["spec"].get("nodeName") or "no node yet"
                if phase == "Running":
                    self._mark("render_running")
                self.story.step(f"pod/{pod_name} {phase} on {node}", phase=phase, node=node)
        condition = ended(job)
        if condition != self.condition:
            self.condition = condition
            self._mark("job_ended")
            done = int((job.get("status") or {}).get("succeeded") or 0)
            self.story.step(f"job/{self.name} {condition}: {done}/1 succeeded", state=condition)

    def back(self) -> bool:
        """Ollama scaled 1 -> 0 -> 1, Ready, and gpuherd's annotations gone from it."""
        return (
            self.history[-1] == 1
            and 0 in self.history
            and self.replicas[1] == 1
            and (not self.ollama_notes)
        )

    def done(self) -> bool:
        return self.back() and self.condition is not None and "gpuherd.io/outcome" in self.job_notes

    def waiting_for(self) -> str:
        if self.holder is None:
            return "a broker to take the Job"
        if 0 not in self.history:
            return "Ollama scaled to zero"
        if self.condition is None:
            return "the render to end"
        if not self.back():
            return "Ollama back, Ready, without gpuherd's annotations"
        return "the Job's gpuherd.io/outcome annotation"


def follow(flw: Follow, procs: Procs, timeout: float) -> Follow:
    """Run `flw` until the story is over; DemoFailed naming the step it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        procs.check_alive()
        flw.once()
        if flw.condition == "Failed":
            raise DemoFailed(f"job/{flw.name} failed: {(flw.last.get('status') or {})}")
        if flw.done():
            return flw
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {flw.waiting_for()}")
        time.sleep(POLL)
