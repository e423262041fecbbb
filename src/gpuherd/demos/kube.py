"""`gpuherd demo --kubernetes`: the nightly render on a simulated two-node k3s cluster.

The field report behind the Kubernetes mode: a GPU node runs Ollama; the nightly render
CronJob needs more VRAM than is free, so someone scaled Ollama to zero by hand before it and
back after. Here the broker on that node does it, and the demo shows each step.

All of it runs in a temporary directory: two simulated GPUs held by real processes, the
simulated cluster as its own process (`gpuherd sim cluster up`: the real API on loopback, a
kubelet per node running pods as local processes), one `gpuherd serve --kubernetes` per node as
the DaemonSet runs it, and the objects created through the API as `kubectl` would. Every
process ends and the directory is removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from gpuherd.api.client import Client
from gpuherd.demos import kube_objects as cast
from gpuherd.demos.kube_objects import GPUS, JOB, JOB_NAMESPACE, OTHER_NODE, RENDER_NODE
from gpuherd.demos.kube_watch import (
    GIB,
    Brokers,
    Cluster,
    Follow,
    Story,
    follow,
    gpu_line,
    gpuherd_notes,
    replicas,
    wait,
    written,
)
from gpuherd.demos.processes import DemoFailed, Procs, sigterm_as_interrupt
from gpuherd.gpu.sim import SimHost
from gpuherd.units import format_bytes, parse_bytes

Obj = dict[str, Any]
NEEDS = ("kubernetes", "kubernetes_validate", "jsonschema")  # the `simcluster` extra
INSTALL = "pip install 'gpuherd[simcluster]'"
START_TIMEOUT = 30.0  # seconds for the cluster, the brokers and the tenants' pods
STORY_TIMEOUT = 40.0  # seconds from the Job's creation to Ollama back and the Job's outcome
EXIT_INTERRUPTED = 130  # as a shell reports a Ctrl-C


def missing_packages() -> list[str]:
    return [m for m in NEEDS if importlib.util.find_spec(m) is None]


def run_kube_demo(console: Console | None = None, *, as_json: bool = False) -> int:
    """Run the story: 0 when it went as expected, 1 with the reason when not, 2 without the
    `simcluster` extra, 130 on Ctrl-C. `as_json`: no narrative, one JSON object at the end."""
    out = console or Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    missing = missing_packages()
    if missing:
        err.print(
            "[bold red]error:[/] gpuherd demo --kubernetes runs a simulated cluster, which needs "
            f"{', '.join(missing)} (not installed)"
        )
        err.print(f"[dim]hint:[/] {escape(INSTALL)}")
        return 2
    story = Story(None if as_json else out)
    work = Path(tempfile.mkdtemp(prefix="gpuherd-k8s-"))
    result: Obj = {"ok": False}
    code = 1
    # Nothing of the caller's cluster or broker settings (KUBECONFIG, GPUHERD_CONFIG...).
    keep = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "NODE_NAME") and not k.startswith("GPUHERD_")
    }
    procs = Procs(logs=work, env={**keep, "GPUHERD_SIM_DIR": str(work / "sim")})
    try:
        with sigterm_as_interrupt():
            result |= _run(work, story, procs)
            result["ok"], code = True, 0
    except KeyboardInterrupt:
        result["reason"], code = "interrupted", EXIT_INTERRUPTED
        if not as_json:
            err.print("interrupted: ending the brokers, the cluster and its pods")
    except DemoFailed as exc:
        result["reason"] = str(exc)
        if not as_json:
            err.print(f"[bold red]demo failed:[/] {escape(str(exc))}")
    finally:
        procs.end(last="cluster")
        shutil.rmtree(work, ignore_errors=True)
    result["steps"] = story.steps
    result["seconds"] = round(time.monotonic() - story.t0, 2)  # everything ended, too
    if code == 0:
        result["summary"] += f", demo {result['seconds']:.1f}s"
    if as_json:
        print(json.dumps(result, indent=2))
    elif code == 0:
        out.print(result["summary"], markup=False)
    return code


def _run(work: Path, story: Story, procs: Procs) -> Obj:
    from gpuherd.k8s.client import ConfigError, KubeClient, KubeError

    sim_dir, cluster_dir = work / "sim", work / "cluster"
    story.rule("gpuherd demo --kubernetes: the nightly render on a simulated k3s cluster")
    SimHost.init(sim_dir, [(name, parse_bytes(size)) for _, name, size in GPUS]).close()
    up = cast.gpuherd("sim", "cluster", "up", "--dir", str(cluster_dir), "--sim-dir", str(sim_dir))
    up += ["--time-slicing", str(cast.TIME_SLICES), "--bookmark-interval", "1"]
    for i, (node, _, _) in enumerate(GPUS):
        up += ["--node", f"{node}:{i}"]
    procs.spawn("cluster", up)
    url = procs.first_line("cluster", "listening", START_TIMEOUT).split()[-1]
    for i, (node, name, size) in enumerate(GPUS):
        story.say(f"node {node}: GPU {i}, {name} {size}, time-sliced x{cast.TIME_SLICES}")
    story.say(f"API server {url} (gpuherd's simulated cluster, `gpuherd sim cluster up`)")
    sockets: dict[str, Path] = {}
    for i, (node, _, _) in enumerate(GPUS):
        state = work / f"broker-{node}"
        state.mkdir()
        sockets[node] = work / f"{i}.sock"  # short: a socket's path has 107 bytes at most
        procs.spawn(
            f"broker {node}",
            cast.gpuherd(
                "serve", "--kubernetes", "--kubeconfig", str(cluster_dir / "kubeconfig"),
                "--node", node, "--backend", "sim", "--sim-dir", str(sim_dir),
                "--proc-root", str(cluster_dir), "--gpu-index", str(i),
                "--state", str(state), "--socket", str(sockets[node]),
            ),
        )  # fmt: skip
    try:
        kc = KubeClient.load(cluster_dir / "kubeconfig")
    except ConfigError as exc:
        raise DemoFailed(str(exc)) from None
    try:
        cluster = Cluster(kc, sim_dir)
        _set_the_scene(cluster, story, procs)
        brokers = Brokers({node: Client(socket=s, timeout=10) for node, s in sockets.items()})
        try:
            return _the_night(cluster, story, procs, brokers)
        finally:
            brokers.close()
    except KubeError as exc:
        raise DemoFailed(f"the API server answered {exc.status}: {exc.message}") from None
    finally:
        kc.close()


def _set_the_scene(cluster: Cluster, story: Story, procs: Procs) -> None:
    """The namespaces, the tenants Ready, both brokers listening."""
    story.cmd(f"kubectl create namespace {' '.join(cast.NAMESPACES)}")
    for ns in cast.NAMESPACES:
        cluster.create(cast.namespace(ns))
    tenants = cast.tenants()
    for body in tenants:
        meta = body["metadata"]
        notes = " ".join(f"{k}={v}" for k, v in meta["annotations"].items())
        story.cmd(f"kubectl -n {meta['namespace']} apply -f {meta['name']}.yaml   # {notes}")
        cluster.create(body)
    for node, _, _ in GPUS:
        procs.first_line(f"broker {node}", '"listening"', START_TIMEOUT)
        story.say(f"gpuherd serve --kubernetes --node {node}   (what the DaemonSet runs there)")
    for body in tenants:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]

        def ready(ns: str = ns, name: str = name) -> bool:
            return replicas(cluster.deployment(ns, name))[1] == 1

        wait(f"deployment {ns}/{name} Ready", START_TIMEOUT, ready, procs)
    held = 13 * GIB  # ollama 10 + frigate 3

    def loaded() -> bool:
        return cluster.gpus()[0][0] >= held

    wait(f"the tenants' {format_bytes(held)} on GPU 0", START_TIMEOUT, loaded, procs)
    story.cmd("kubectl get deployments -A -o wide")
    rows = [("NAMESPACE", "NAME", "READY", "NODE", "GPUHERD.IO ANNOTATIONS")]
    for body in tenants:
        meta = body["metadata"]
        d = cluster.deployment(meta["namespace"], meta["name"])
        want, ready_now = replicas(d)
        node = body["spec"]["template"]["spec"]["nodeSelector"][cast.HOSTNAME]
        notes = " ".join(
            f"{k.removeprefix('gpuherd.io/')}={v}" for k, v in gpuherd_notes(d).items()
        )
        rows.append((meta["namespace"], meta["name"], f"{ready_now}/{want}", node, notes))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        story.say("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for index, (used, total) in cluster.gpus().items():
        story.say("  " + gpu_line(index, used, total))


def _the_night(cluster: Cluster, story: Story, procs: Procs, brokers: Brokers) -> Obj:
    """The CronJob, its Job, the broker's work, and the checks that it went as it should."""
    for node, names in ((RENDER_NODE, {"ollama", "frigate"}), (OTHER_NODE, {"whisper"})):

        def known(node: str = node, names: set[str] = names) -> dict[str, str] | None:
            seen = brokers.tenants(node)
            return seen if names <= set(seen) else None

        what = f"the broker on {node} to know {', '.join(sorted(names))}"
        seen = wait(what, START_TIMEOUT, known, procs)
        listed = ", ".join(f"{name} ({state})" for name, state in sorted(seen.items()))
        story.say(f"broker on {node}: tenants from the annotations: {listed}")
    used, total = cluster.gpus()[0]
    need = parse_bytes(cast.RENDER_VRAM)
    story.say(
        f"The nightly render needs {format_bytes(need)}; {RENDER_NODE} has "
        f"{format_bytes(total - used)} free. The field report's way, by hand: kubectl -n ollama "
        "scale deployment ollama --replicas=0, run the render, scale back. Here the node's "
        "broker does it."
    )
    if total - used >= need:
        raise DemoFailed(f"GPU 0 has {format_bytes(total - used)} free: the render would fit")
    body = cast.cronjob()
    story.cmd(f"kubectl -n {JOB_NAMESPACE} apply -f {cast.CRONJOB}.yaml   # excerpt:")
    story.block(cast.excerpt(body))
    made = cluster.create(body)
    story.cmd(f"kubectl -n {JOB_NAMESPACE} create job {JOB} --from=cronjob/{cast.CRONJOB}")
    job_body = cast.job_from(made, JOB)
    declared = gpuherd_notes(job_body)
    story.clock = time.monotonic()
    job = cluster.create(job_body)
    story.step(f"job/{JOB} created: suspended, labelled gpuherd.io/queue=gpu")
    ollama_declared = gpuherd_notes(cast.tenants()[0])
    flw = follow(
        Follow(cluster, story, brokers, job, declared, ollama_declared), procs, STORY_TIMEOUT
    )
    records = wait(
        f"the broker on {RENDER_NODE} to record the Job's result",
        10.0,
        lambda: [r for r in brokers.jobs(RENDER_NODE) if r["state"] in ("succeeded", "failed")],
        procs,
    )
    others = brokers.jobs(OTHER_NODE)
    brokers.poll(story)
    return _verdict(cluster, story, brokers, flw, records=records, others=others)


def _verdict(
    cluster: Cluster,
    story: Story,
    brokers: Brokers,
    flw: Follow,
    *,
    records: list[Obj],
    others: list[Obj],
) -> Obj:
    frigate = replicas(cluster.deployment("nvr", "frigate"))
    whisper = replicas(cluster.deployment("speech", "whisper"))
    final = cluster.job(JOB_NAMESPACE, JOB)
    job_notes = written(final, flw.declared)
    used = cluster.gpus()[0][0]
    problems = []
    if flw.holder != RENDER_NODE:
        problems.append(f"the Job was taken by the broker on {flw.holder}, not on {RENDER_NODE}")
    if flw.history != [1, 0, 1]:
        problems.append(f"ollama's replicas went {' -> '.join(map(str, flw.history))}")
    if not flw.released_notes.get("gpuherd.io/released-by", "").startswith(f"{RENDER_NODE}/"):
        problems.append(f"ollama was never annotated gpuherd.io/released-by {RENDER_NODE}/...")
    if brokers.released(RENDER_NODE) != ["ollama"] or brokers.released(OTHER_NODE):
        problems.append(
            f"released: {brokers.released(RENDER_NODE)} on {RENDER_NODE}, "
            f"{brokers.released(OTHER_NODE)} on {OTHER_NODE} (only ollama should be)"
        )
    if frigate != (1, 1) or whisper != (1, 1):
        problems.append(f"frigate {frigate} or whisper {whisper} is not 1/1 Ready")
    if [r["state"] for r in records] != ["succeeded"] or job_notes.get("gpuherd.io/outcome") != (
        "succeeded"
    ):
        problems.append(f"the broker on {RENDER_NODE} recorded {records}, the Job says {job_notes}")
    if others:
        problems.append(f"the broker on {OTHER_NODE} took jobs: {others}")
    if problems:
        raise DemoFailed("; ".join(problems))
    story.say("")
    story.say(f"after: {gpu_line(0, used, cluster.gpus()[0][1])}")
    story.say(f"job/{JOB}: the annotations gpuherd wrote")
    for k, v in sorted(job_notes.items()):
        story.say(f"  {k}: {v}")
    story.cmd("gpuherd jobs --all   # each node's broker, through its socket")
    for r in records:
        story.say(f"  {RENDER_NODE}: {r['id']} {r['name']} {r['state']}")
    story.say(f"  {OTHER_NODE}: no jobs")
    timings = _timings(flw, brokers, story.clock or story.t0)
    summary = (
        f"nightly render ran {timings['render_ran']:.1f}s on {RENDER_NODE}; ollama replicas "
        f"1 -> 0 -> 1, down {timings['ollama_down']:.1f}s (released in "
        f"{timings['release']:.2f}s, restored in {timings['restore']:.2f}s); frigate and "
        f"{OTHER_NODE}'s whisper untouched; story {timings['story']:.1f}s"
    )
    return {
        "summary": summary,
        "nodes": [{"node": n, "gpu": name, "vram": size} for n, name, size in GPUS],
        "job": {
            "name": JOB,
            "namespace": JOB_NAMESPACE,
            "state": flw.condition,
            "taken_by": flw.holder,
            "pinned_to": (final["spec"]["template"]["spec"].get("nodeSelector") or {}).get(
                cast.HOSTNAME
            ),
            "annotations_written": job_notes,
            "gpuherd_job": records[0]["id"],
        },
        "ollama": {"replicas": flw.history, "annotations_written": flw.released_notes},
        "untouched": {"nvr/frigate": list(frigate), "speech/whisper": list(whisper)},
        "gpu0_used_bytes": used,
        "timings": timings,
    }


def _timings(flw: Follow, brokers: Brokers, t0: float) -> dict[str, float]:
    """Seconds: milestones from the Job's creation, and durations."""
    m = flw.marks
    at = {
        k: m[k] - t0
        for k in (
            "admitted",
            "ollama_scaled_to_0",
            "job_unsuspended",
            "render_running",
            "job_ended",
            "ollama_scaled_to_1",
            "ollama_ready_again",
        )
        if k in m
    }
    spans = {
        "render_ran": m.get("job_ended", 0.0) - m.get("render_running", 0.0),
        "ollama_down": m.get("ollama_ready_again", 0.0) - m.get("ollama_down", 0.0),
        "release": brokers.seconds(RENDER_NODE, "released") or 0.0,
        "restore": brokers.seconds(RENDER_NODE, "restored") or 0.0,
        "story": time.monotonic() - t0,
    }
    return {k: round(v, 2) for k, v in (at | spans).items()}
