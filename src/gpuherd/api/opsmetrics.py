"""Metrics for the alert rules (deploy/prometheus/gpuherd-rules.yaml) that the broker's own
collector does not carry yet: how long each tenant has been released against its
max_downtime, and how long the oldest queued job has waited. Read from the same views, at
scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gpuherd.broker.service import Broker
from gpuherd.ids import TenantName


class OpsCollector(Collector):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        views = self.broker.views
        down_since: dict[str, float] = {}
        for r in views.releases():
            if r.released_at is not None and r.restored_at is None:
                down_since[r.tenant] = min(r.released_at, down_since.get(r.tenant, now))
        released = GaugeMetricFamily(
            "gpuherd_tenant_released_seconds",
            "Seconds the tenant has been released (0 while it runs)",
            labels=["tenant"],
        )
        limit = GaugeMetricFamily(
            "gpuherd_tenant_max_downtime_seconds",
            "The tenant's max_downtime from the config (only tenants that set one)",
            labels=["tenant"],
        )
        for t in views.tenants():
            since = down_since.get(t.name)
            released.add_metric([t.name], 0.0 if since is None else now - since)
            spec = self.broker.config.tenants.get(TenantName(t.name))
            if spec is not None and spec.max_downtime is not None:
                limit.add_metric([t.name], spec.max_downtime)
        yield released
        yield limit
        oldest = GaugeMetricFamily(
            "gpuherd_job_oldest_wait_seconds",
            "Seconds the longest-queued job has waited since it was submitted (0: none queued)",
        )
        queued = [j.submitted_at for j in views.jobs() if str(j.state) == "queued"]
        oldest.add_metric([], now - min(queued) if queued else 0.0)
        yield oldest
