"""Prometheus metrics, computed at scrape time from the journal and the latest GPU snapshot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gpuherd.broker.daemon import Daemon
from gpuherd.broker.journal import TENANT_STATES
from gpuherd.gpu.attribution import attribute

_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, float("inf"))


class BrokerCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        yield from self._hardware()
        yield from self._releases()
        yield from self._jobs()

    def _hardware(self) -> Iterator[GaugeMetricFamily]:
        engine = self.daemon.engine
        snap = self.daemon.last_snapshot
        memory = GaugeMetricFamily(
            "gpuherd_gpu_memory_bytes", "GPU memory by kind", labels=["gpu", "uuid", "kind"]
        )
        held = GaugeMetricFamily(
            "gpuherd_tenant_vram_bytes", "VRAM held by a tenant's processes", labels=["tenant"]
        )
        if snap is not None:
            for dev in snap.devices:
                for kind, value in (
                    ("total", dev.memory_total),
                    ("used", dev.memory_used),
                    ("free", dev.memory_free),
                ):
                    memory.add_metric([str(dev.index), dev.uuid, kind], value)
            totals: Counter[str] = Counter()
            for item in attribute(snap, engine.config.tenants):
                if item.tenant:
                    totals[item.tenant] += item.process.used_bytes or 0
            for tenant in engine.config.tenants:
                held.add_metric([tenant], totals.get(tenant, 0))
        yield memory
        yield held

    def _releases(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        engine = self.daemon.engine
        releases = engine.journal.releases()
        open_states = {
            r.tenant: TENANT_STATES[r.state] for r in releases if r.state in TENANT_STATES
        }
        state = GaugeMetricFamily(
            "gpuherd_tenant_state", "1 for the tenant's current state", labels=["tenant", "state"]
        )
        for tenant in engine.config.tenants:
            state.add_metric([tenant, open_states.get(tenant, "running")], 1)
        yield state
        pre: Counter[tuple[str, str]] = Counter(
            (r.method or "", "released" if r.released_at else "failed") for r in releases
        )
        res: Counter[tuple[str, str]] = Counter(
            (r.method or "", r.state) for r in releases if r.state in ("restored", "restore_failed")
        )
        for name, help_text, counts in (
            ("gpuherd_preemptions", "Releases by method and outcome", pre),
            ("gpuherd_restores", "Restores by method and outcome", res),
        ):
            family = CounterMetricFamily(name, help_text, labels=["method", "outcome"])
            for (method, outcome), n in counts.items():
                family.add_metric([method, outcome], n)
            yield family
        failures = CounterMetricFamily("gpuherd_restore_failures", "Restores that failed")
        failures.add_metric([], engine.journal.event_counts().get("restore_failed", 0))
        yield failures
        down = CounterMetricFamily(
            "gpuherd_tenant_downtime_seconds", "Seconds tenants spent released"
        )
        down.add_metric(
            [],
            sum(r.restored_at - r.released_at for r in releases if r.released_at and r.restored_at),
        )
        yield down

    def _jobs(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        jobs = self.daemon.engine.journal.jobs(include_ended=True)
        runs = CounterMetricFamily("gpuherd_job_runs", "Jobs by outcome", labels=["outcome"])
        for outcome, n in Counter(j.state for j in jobs if j.ended_at).items():
            runs.add_metric([outcome], n)
        yield runs
        queue = GaugeMetricFamily("gpuherd_queue_length", "Jobs waiting to start")
        queue.add_metric([], sum(1 for j in jobs if j.state == "queued"))
        yield queue
        durations = [j.ended_at - j.started_at for j in jobs if j.started_at and j.ended_at]
        buckets = [
            (str(b) if b != float("inf") else "+Inf", sum(1 for d in durations if d <= b))
            for b in _BUCKETS
        ]
        hist = HistogramMetricFamily("gpuherd_job_duration_seconds", "Job run time")
        hist.add_metric([], buckets, sum_value=sum(durations))
        yield hist
