"""One container of a simulated pod: a local process in its own session, its log file, its
restarts and readiness, and the containerStatuses entry the kubelet reports for it."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpuherd.simcluster.probes import ReadinessProbe
from gpuherd.simcluster.store import now_iso

Obj = dict[str, Any]
# A container without a command runs this: it waits for SIGTERM as an idle server would.
PAUSE = "import signal; signal.signal(signal.SIGTERM, lambda *a: exit(0)); signal.pause()"
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` references in command and args; `$$(VAR)` stays literal."""
    parts = text.split("$$")
    return "$".join(_REF.sub(lambda m: env.get(m.group(1), m.group(0)), p) for p in parts)


def _field_ref(pod: Obj, path: str, ip: str, host_ip: str) -> str:
    meta, spec = pod["metadata"], pod["spec"]
    found = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if found is not None:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    return str(
        {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.podIP": ip,
            "status.podIPs": ip,
            "status.hostIP": host_ip,
            "status.hostIPs": host_ip,
        }.get(path, "")
    )


def container_env(
    pod: Obj, spec: Obj, base: dict[str, str], ip: str, host_ip: str
) -> dict[str, str]:
    env = dict(base)
    for item in spec.get("env") or []:
        if "value" in item:
            env[item["name"]] = expand(str(item["value"]), env)
        elif "fieldRef" in (item.get("valueFrom") or {}):
            env[item["name"]] = _field_ref(
                pod, item["valueFrom"]["fieldRef"]["fieldPath"], ip, host_ip
            )
    for key in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        if key in base:
            env[key] = base[key]  # the device plugin's allocation wins over the manifest
    return env


class Container:
    def __init__(self, spec: Obj, env: dict[str, str], directory: Path, ip: str) -> None:
        self.spec, self.env, self.ip = spec, env, ip
        self.name = str(spec["name"])
        self.log_path = directory / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.container_id = ""
        self.started_at = ""
        self.restart_count = 0
        self.terminated: Obj | None = None
        self.last_terminated: Obj | None = None
        self.restart_at: float | None = None
        self.probe: ReadinessProbe | None = None
        self.pids: set[int] = set()  # every pid given a cgroup file, removed at the end
        self.cgroup = ""  # the text of those files
        self._start()

    def _argv(self) -> list[str]:
        command = [expand(str(a), self.env) for a in self.spec.get("command") or []]
        args = [expand(str(a), self.env) for a in self.spec.get("args") or []]
        if not command and not args:
            return [sys.executable, "-c", PAUSE]
        return command + args if command else args

    def _start(self) -> None:
        self.container_id = secrets.token_hex(32)
        self.started_at = now_iso()
        self.terminated = None
        argv = self._argv()
        workdir = self.spec.get("workingDir")
        cwd = workdir if workdir and Path(workdir).is_dir() else str(self.log_path.parent)
        with self.log_path.open("ab") as log:
            try:
                self.proc = subprocess.Popen(
                    argv,
                    env=self.env,
                    cwd=cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                self.proc = None
                self.terminated = self._terminated(
                    128,
                    "StartError",
                    f"failed to create containerd task: exec: {argv[0]!r}: {exc.strerror}",
                )
                return
        probe = self.spec.get("readinessProbe")
        if probe:
            self.probe = ReadinessProbe(probe, self.spec, self.ip, self.env)

    def _terminated(self, code: int, reason: str, message: str | None = None) -> Obj:
        state: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": self.started_at,
            "finishedAt": now_iso(),
            "containerID": f"containerd://{self.container_id}",
        }
        if message:
            state["message"] = message
        return state

    @property
    def running(self) -> bool:
        return self.proc is not None and self.terminated is None

    def poll(self) -> None:
        if self.proc is None or self.terminated is not None:
            return
        code = self.proc.poll()
        if code is None:
            return
        # A signal death reads as 128 + signal number, as container runtimes report it.
        exit_code = 128 - code if code < 0 else code
        self.terminated = self._terminated(exit_code, "Completed" if exit_code == 0 else "Error")
        self.stop_probe()

    def restart(self) -> None:
        self.last_terminated = self.terminated
        self.restart_count += 1
        self.restart_at = None
        self._start()

    def signal(self, sig: signal.Signals) -> None:
        if self.running and self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.poll()

    def stop_probe(self) -> None:
        if self.probe is not None:
            self.probe.stop.set()

    def descendants(self, children: dict[int, list[int]]) -> set[int]:
        """The container's process and its descendants, from a parent -> children map."""
        if not self.running or self.proc is None:
            return set()
        found, todo = set(), [self.proc.pid]
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo.extend(children.get(pid, ()))
        return found

    @property
    def ready(self) -> bool:
        if not self.running:
            return False
        return self.probe.ready if self.probe is not None else True

    def status(self) -> Obj:
        image = str(self.spec.get("image", ""))
        entry: Obj = {
            "name": self.name,
            "image": image,
            "imageID": f"{image}@sha256:{'0' * 64}",
            "containerID": f"containerd://{self.container_id}",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.running,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.restart_at is not None:
            entry["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting failed container {self.name}",
                }
            }
        elif self.terminated is not None:
            entry["state"] = {"terminated": self.terminated}
        else:
            entry["state"] = {"running": {"startedAt": self.started_at}}
        return entry

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def start_container(
    pod: Obj, spec: Obj, *, base: dict[str, str], directory: Path, ip: str, host_ip: str
) -> Container:
    return Container(spec, container_env(pod, spec, base, ip, host_ip), directory, ip)


__all__ = ["Container", "container_env", "expand", "start_container"]
