"""Readiness probes as the kubelet runs them: httpGet, tcpSocket and exec, on a thread per
container, with initialDelaySeconds, periodSeconds, timeoutSeconds and the thresholds."""

from __future__ import annotations

import socket
import subprocess
import threading
import urllib.error
import urllib.request
from typing import Any

Obj = dict[str, Any]


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int):
        return value
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    return int(value)


def probe_once(probe: Obj, container: Obj, pod_ip: str, env: dict[str, str]) -> bool:  # noqa: PLR0911 - one per probe kind
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        spec = probe["httpGet"]
        host = spec.get("host") or pod_ip
        scheme = str(spec.get("scheme", "HTTP")).lower()
        url = f"{scheme}://{host}:{_port(spec['port'], container)}{spec.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - probe URL
                return 200 <= int(reply.status) < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False
    if "tcpSocket" in probe:
        spec = probe["tcpSocket"]
        try:
            with socket.create_connection(
                (spec.get("host") or pod_ip, _port(spec["port"], container)), timeout=timeout
            ):
                return True
        except OSError:
            return False
    if "exec" in probe:
        try:
            done = subprocess.run(
                probe["exec"]["command"], env=env, timeout=timeout, capture_output=True, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0
    return True


class ReadinessProbe:
    """Runs until `stop` is set; `ready` follows success/failure thresholds."""

    def __init__(self, probe: Obj, container: Obj, pod_ip: str, env: dict[str, str]) -> None:
        self.probe, self.container, self.pod_ip, self.env = probe, container, pod_ip, env
        self.ready = False
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="simcluster-probe")
        self._thread.start()

    def _run(self) -> None:
        probe = self.probe
        if self.stop.wait(float(probe.get("initialDelaySeconds", 0))):
            return
        period = float(probe.get("periodSeconds", 10))
        need_ok, need_fail = (
            int(probe.get("successThreshold", 1)),
            int(probe.get("failureThreshold", 3)),
        )
        ok = fail = 0
        while not self.stop.is_set():
            if probe_once(probe, self.container, self.pod_ip, self.env):
                ok, fail = ok + 1, 0
                if ok >= need_ok:
                    self.ready = True
            else:
                ok, fail = 0, fail + 1
                if fail >= need_fail:
                    self.ready = False
            self.stop.wait(period)
