"""The pure scheduler: worked examples and properties over random instances."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuherd.broker.scheduler import (
    Admit,
    GpuState,
    JobRequest,
    Preempt,
    TenantState,
    Wait,
    _excluded,
    _key,
    schedule,
)
from gpuherd.ids import GpuName, JobId, TenantName

G0 = GpuName("gpu0")
GIB = 1024**3


def tenant(
    name: str,
    priority: int,
    held_gib: float,
    *,
    preemptible: bool = True,
    max_downtime: float | None = None,
    cooldown_until: float | None = None,
    restore_cost: float = 0.0,
    state: str = "running",
) -> TenantState:
    return TenantState(
        name=TenantName(name),
        gpu=G0,
        priority=priority,
        preemptible=preemptible,
        held=int(held_gib * GIB),
        max_downtime=max_downtime,
        cooldown_until=cooldown_until,
        restore_cost=restore_cost,
        state=state,
    )


def job(
    id_: str,
    vram_gib: float,
    priority: int = 50,
    *,
    timeout: float = 1800.0,
    at: float = 0.0,
    not_before: float | None = None,
) -> JobRequest:
    return JobRequest(
        id=JobId(id_),
        gpu=G0,
        vram=int(vram_gib * GIB),
        priority=priority,
        timeout=timeout,
        submitted_at=at,
        not_before=not_before,
    )


def run(
    free_gib: float, tenants: list[TenantState], queue: list[JobRequest], now: float = 100.0
) -> list[object]:
    return list(
        schedule(
            gpus=[GpuState(name=G0, free=int(free_gib * GIB))],
            tenants=tenants,
            queue=queue,
            now=now,
        )
    )


def test_admits_when_free() -> None:
    assert run(8, [], [job("j", 6)]) == [Admit(JobId("j"), G0)]


def test_the_wait_message_names_what_blocks() -> None:
    (decision,) = run(3.5, [tenant("plex", 100, 2, preemptible=False)], [job("render", 6)])
    assert decision == Wait(
        JobId("render"), "needs 6.0 GiB, 3.5 GiB free; plex (priority 100) not preemptible"
    )


def test_lowest_priority_victims_first_then_fewest_then_cheapest() -> None:
    tenants = [
        tenant("ollama", 10, 4),
        tenant("whisper", 20, 3),
        tenant("tts", 10, 1),
        tenant("tts2", 10, 3, restore_cost=30.0),
        tenant("asr", 10, 3, restore_cost=5.0),
    ]
    # Deficit 2.5 GiB: priority-10 tenants suffice; one victim is enough (ollama 4, asr 3, tts2 3);
    # among single victims the cheapest restore wins: ollama (0 s).
    assert run(3.5, tenants, [job("j", 6)]) == [Preempt(JobId("j"), G0, (TenantName("ollama"),))]
    # Deficit 6.5: needs two priority-10 victims; ollama + asr (cost 5) beats ollama + tts2 (30).
    assert run(3.5, tenants, [job("j", 10)]) == [
        Preempt(JobId("j"), G0, (TenantName("ollama"), TenantName("asr")))
    ]


def test_never_a_tenant_that_cannot_go() -> None:
    tenants = [
        tenant("long", 10, 8, max_downtime=600.0),
        tenant("cool", 10, 8, cooldown_until=160.0),
        tenant("equal", 50, 8),
        tenant("released", 10, 8, state="released"),
    ]
    (decision,) = run(1, tenants, [job("j", 6, timeout=1800.0)])
    assert isinstance(decision, Wait)
    assert decision.reason == (
        "needs 6.0 GiB, 1.0 GiB free; long allows 600.0s down, the job may run 1800s; cool in "
        "cooldown for 60s; equal (priority 50) not below the job's 50; released is released"
    )


def test_priority_then_fifo_and_no_overtaking() -> None:
    queue = [
        job("low", 2, priority=10, at=0.0),
        job("first", 6, priority=50, at=1.0),
        job("second", 2, priority=50, at=2.0),
    ]
    decisions = run(3, [tenant("plex", 100, 2, preemptible=False)], queue)
    assert decisions == [
        Wait(JobId("first"), "needs 6.0 GiB, 3.0 GiB free; plex (priority 100) not preemptible"),
        Wait(JobId("second"), "queued behind first on gpu0"),
        Wait(JobId("low"), "queued behind first on gpu0"),
    ]


def test_not_before_waits_and_victims_are_not_shared() -> None:
    tenants = [tenant("ollama", 10, 4)]
    decisions = run(
        3,
        tenants,
        [job("a", 6, at=0.0), job("b", 6, at=1.0), job("later", 1, at=2.0, not_before=200.0)],
    )
    assert decisions[0] == Preempt(JobId("a"), G0, (TenantName("ollama"),))
    assert isinstance(decisions[1], Wait)  # ollama is already taken by a
    assert decisions[2] == Wait(JobId("later"), "not before 100s from now")


_tenants = st.lists(
    st.builds(
        lambda n, p, h, pre, md, cd, rc, stt: TenantState(
            name=TenantName(f"t{n}"),
            gpu=G0,
            priority=p,
            preemptible=pre,
            held=h * GIB // 2,
            max_downtime=md,
            cooldown_until=cd,
            restore_cost=rc,
            state=stt,
        ),
        st.integers(0, 10_000),
        st.integers(0, 60),
        st.integers(0, 16),
        st.booleans(),
        st.one_of(st.none(), st.sampled_from([60.0, 3600.0, 7200.0])),
        st.one_of(st.none(), st.sampled_from([50.0, 150.0])),
        st.sampled_from([0.0, 1.0, 5.0]),
        st.sampled_from(["running", "running", "released"]),
    ),
    max_size=8,
    unique_by=lambda t: t.name,
)


@settings(max_examples=400, deadline=None)
@given(
    tenants=_tenants,
    free=st.integers(-2, 20),
    jobs=st.lists(st.tuples(st.integers(1, 24), st.integers(0, 70)), min_size=1, max_size=5),
)
def test_properties(tenants: list[TenantState], free: int, jobs: list[tuple[int, int]]) -> None:
    queue = [
        JobRequest(
            id=JobId(f"j{i}"),
            gpu=G0,
            vram=v * GIB // 2,
            priority=p,
            timeout=3600.0,
            submitted_at=float(i),
        )
        for i, (v, p) in enumerate(jobs)
    ]
    by_name = {t.name: t for t in tenants}
    available = free * GIB // 2
    used: set[str] = set()
    for d in schedule(
        gpus=[GpuState(name=G0, free=available)], tenants=tenants, queue=queue, now=100.0
    ):
        request = next(q for q in queue if q.id == d.job)
        if isinstance(d, Admit):
            assert request.vram <= available  # never beyond what is free
            available -= request.vram
        elif isinstance(d, Preempt):
            victims = [by_name[v] for v in d.victims]
            assert not used & set(d.victims)
            for v in victims:  # never a higher-or-equal, pinned, cooling or busy tenant
                assert _excluded(v, request, 100.0) is None
                assert v.priority < request.priority
            deficit = request.vram - available
            assert sum(v.held for v in victims) >= deficit
            # Minimal: no eligible set that covers the deficit ranks better.
            eligible = [
                t for t in tenants if t.name not in used and _excluded(t, request, 100.0) is None
            ]
            best = min(
                (
                    _key(s)
                    for k in range(1, len(eligible) + 1)
                    for s in combinations(eligible, k)
                    if sum(v.held for v in s) >= deficit
                ),
                default=None,
            )
            assert best == _key(tuple(victims))
            used.update(d.victims)
            available += sum(v.held for v in victims) - request.vram
