"""The control loop: runs the scheduler, the workload and Job controllers and the garbage
collector after every change to the store (and on a short tick for timers)."""

from __future__ import annotations

import logging
import threading

from gpuherd.simcluster import jobs, scheduler, workloads
from gpuherd.simcluster.podutil import PODS
from gpuherd.simcluster.store import Store

log = logging.getLogger(__name__)


class Controllers:
    def __init__(self, store: Store, *, tick: float) -> None:
        self.store = store
        self.tick = tick

    def reconcile(self) -> None:
        store = self.store
        workloads.collect_garbage(store)
        pods = store.list(PODS)[0]
        replicasets = store.list(workloads.REPLICASETS)[0]
        for deploy in store.list(workloads.DEPLOYMENTS)[0]:
            workloads.sync_deployment(store, deploy, replicasets, pods)
        for rs in store.list(workloads.REPLICASETS)[0]:
            workloads.sync_replicaset(store, rs, store.list(PODS)[0])
        for sts in store.list(workloads.STATEFULSETS)[0]:
            workloads.sync_statefulset(store, sts, store.list(PODS)[0])
        for job in store.list(jobs.JOBS)[0]:
            jobs.sync_job(store, job, store.list(PODS)[0])
        scheduler.schedule(store)

    def run(self, stop: threading.Event) -> None:
        seen = -1
        while not stop.is_set():
            with self.store.lock:
                if self.store.rv == seen:
                    self.store.changed.wait(timeout=self.tick)
                seen = self.store.rv
            try:
                self.reconcile()
            except Exception:  # a controller bug must not stop the cluster; it is logged
                log.exception("simulated controllers failed one pass")
                stop.wait(self.tick)
