"""Prometheus metrics, computed at scrape time from the journal and the latest GPU snapshot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gpuherd.broker.states import JobState
from gpuherd.broker.views import Views

_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, float("inf"))


class BrokerCollector(Collector):
    def __init__(self, views: Views) -> None:
        self.views = views

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        yield from self._hardware()
        yield from self._releases()
        yield from self._jobs()
        yield from self._guard()

    def _guard(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        flaps = CounterMetricFamily(
            "gpuherd_guard_flaps", "Times a GPU's headroom guard started flapping"
        )
        flaps.add_metric([], self.views.event_counts().get("guard_flapping", 0))
        yield flaps
        flapping = GaugeMetricFamily(
            "gpuherd_guard_flapping",
            "1 while a GPU's guard releases more often than flaps_per_hour, with the tenants",
            labels=["gpu", "tenants"],
        )
        released = GaugeMetricFamily(
            "gpuherd_guard_released", "Tenants a GPU's guard holds released", labels=["gpu"]
        )
        for g in self.views.guard():
            flapping.add_metric([g.gpu, ",".join(g.flapping)], 1 if g.flapping else 0)
            released.add_metric([g.gpu], len(g.released))
        yield flapping
        yield released

    def _hardware(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        memory = GaugeMetricFamily(
            "gpuherd_gpu_memory_bytes", "GPU memory by kind", labels=["gpu", "uuid", "kind"]
        )
        for gpu in self.views.gpus():
            for kind, value in (("total", gpu.total), ("used", gpu.used), ("free", gpu.free)):
                memory.add_metric([str(gpu.index), gpu.uuid, kind], value)
        yield memory
        tenants = self.views.tenants()
        held = GaugeMetricFamily(
            "gpuherd_tenant_vram_bytes", "VRAM held by a tenant's processes", labels=["tenant"]
        )
        state = GaugeMetricFamily(
            "gpuherd_tenant_state", "1 for the tenant's current state", labels=["tenant", "state"]
        )
        for t in tenants:
            if t.held is not None:
                held.add_metric([t.name], t.held)
            state.add_metric([t.name, str(t.state)], 1)
        yield held
        yield state
        health = self.views.health()
        up = GaugeMetricFamily("gpuherd_engine_up", "1 while the engine loop steps without error")
        up.add_metric([], 1 if health.ok else 0)
        yield up
        errors = CounterMetricFamily("gpuherd_engine_errors", "Engine steps that failed")
        errors.add_metric([], health.errors_total)
        yield errors

    def _releases(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        releases = self.views.releases()
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
        failures.add_metric([], self.views.event_counts().get("restore_failed", 0))
        yield failures
        down = CounterMetricFamily(
            "gpuherd_tenant_downtime_seconds", "Seconds tenants spent released"
        )
        down.add_metric(
            [],
            sum(r.down_s for r in releases if r.down_s is not None),
        )
        yield down

    def _jobs(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        jobs = self.views.jobs(include_ended=True)
        runs = CounterMetricFamily("gpuherd_job_runs", "Jobs by outcome", labels=["outcome"])
        for outcome, n in Counter(str(j.state) for j in jobs if j.ended_at).items():
            runs.add_metric([outcome], n)
        yield runs
        queue = GaugeMetricFamily("gpuherd_queue_length", "Jobs waiting to start")
        queue.add_metric([], sum(1 for j in jobs if j.state is JobState.QUEUED))
        yield queue
        durations = [j.ended_at - j.started_at for j in jobs if j.started_at and j.ended_at]
        buckets = [
            (str(b) if b != float("inf") else "+Inf", sum(1 for d in durations if d <= b))
            for b in _BUCKETS
        ]
        hist = HistogramMetricFamily("gpuherd_job_duration_seconds", "Job run time")
        hist.add_metric([], buckets, sum_value=sum(durations))
        yield hist
