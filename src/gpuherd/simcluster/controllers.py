"""The control loop: runs the scheduler, the workload and Job controllers and the garbage
collector after every change to the store (and on a short tick for timers)."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from gpuherd.simcluster import cronjobs, jobs, keda, scheduler, workloads
from gpuherd.simcluster.podutil import PODS, by_owner
from gpuherd.simcluster.store import Store

log = logging.getLogger(__name__)
IDLE_PASS = 0.5  # seconds between passes when nothing changed


class Controllers:
    def __init__(self, store: Store, *, tick: float) -> None:
        self.store = store
        self.tick = tick

    def reconcile(self) -> None:
        store = self.store
        workloads.collect_garbage(store)
        # One read-only view per pass, indexed by owner: each controller only counts its own
        # objects, and what a pass creates shows in the next pass, which that change starts.
        pods = store.list(PODS, borrow=True)[0]
        replicasets = store.list(workloads.REPLICASETS, borrow=True)[0]
        job_list = store.list(jobs.JOBS, borrow=True)[0]
        children = by_owner(pods, replicasets, job_list)
        for deploy in store.list(workloads.DEPLOYMENTS, borrow=True)[0]:
            workloads.sync_deployment(store, deploy, children)
        for rs in store.list(workloads.REPLICASETS, borrow=True)[0]:
            workloads.sync_replicaset(store, rs, children)
        for sts in store.list(workloads.STATEFULSETS, borrow=True)[0]:
            workloads.sync_statefulset(store, sts, children)
        for job in job_list:
            jobs.sync_job(store, job, children)
        now = dt.datetime.now(dt.UTC)
        for cj in store.list(cronjobs.CRONJOBS, borrow=True)[0]:
            cronjobs.sync_cronjob(store, cj, children, now)
        for so in store.list(keda.SCALEDOBJECTS, borrow=True)[0]:
            keda.sync_scaledobject(store, so)
        scheduler.schedule(store)

    def run(self, stop: threading.Event) -> None:
        seen = -1
        while not stop.is_set():
            with self.store.lock:
                if self.store.rv == seen:
                    # Idle: wake for timers (deadlines, ttl) at a slower pace.
                    self.store.changed.wait(timeout=max(self.tick, IDLE_PASS))
                seen = self.store.rv
            try:
                self.reconcile()
            except Exception:  # a controller bug must not stop the cluster; it is logged
                log.exception("simulated controllers failed one pass")
                stop.wait(self.tick)
