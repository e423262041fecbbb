"""The guard's pure decisions: worked examples (seed 001's card) and properties over random
GPUs, tenants and timers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuherd.broker.guard import (
    GuardGpu,
    GuardTenant,
    Outcome,
    Release,
    Released,
    Restore,
    decide,
    required_free,
    watch_lines,
)
from gpuherd.broker.scheduler import TenantState
from gpuherd.ids import GpuName, TenantName
from gpuherd.spec.model import GuardSpec

G0 = GpuName("gpu0")
GIB = 1024**3
SPEC = GuardSpec.model_validate(
    {"min_free": "2GiB", "for": "5s", "restore_above": "1GiB", "restore_after": "60s"}
)


def tenant(
    name: str,
    priority: int,
    held_gib: float,
    *,
    idle: bool = True,
    headroom_gib: float = 0,
    preemptible: bool = True,
    state: str = "running",
    cooldown_until: float | None = None,
) -> GuardTenant:
    return GuardTenant(
        state=TenantState(
            name=TenantName(name),
            gpu=G0,
            priority=priority,
            preemptible=preemptible,
            held=int(held_gib * GIB),
            state=state,
            cooldown_until=cooldown_until,
        ),
        idle=idle,
        headroom=int(headroom_gib * GIB),
    )


def gpu(free_gib: float, *, low_since: float | None = None, promised_gib: float = 0) -> GuardGpu:
    return GuardGpu(
        name=G0,
        free=int(free_gib * GIB),
        promised=int(promised_gib * GIB),
        spec=SPEC,
        low_since=low_since,
    )


def seed_001(*, ollama_idle: bool = True, whisper_idle: bool = True) -> list[GuardTenant]:
    """12 GiB: plex transcoding (3 GiB, priority 100), whisper 3 GiB (50), ollama 5 GiB (10)."""
    return [
        tenant("plex", 100, 3, headroom_gib=1, preemptible=False, idle=False),
        tenant("whisper", 50, 3, idle=whisper_idle),
        tenant("ollama", 10, 5, idle=ollama_idle),
    ]


def test_pressure_must_last_for_before_anything_is_released() -> None:
    first = decide(gpu(1), seed_001(), [], now=100.0)
    assert (first.action, first.low_since) == (None, 100.0)
    early = decide(gpu(1, low_since=100.0), seed_001(), [], now=104.9)
    assert early.action is None
    due = decide(gpu(1, low_since=100.0), seed_001(), [], now=105.0)
    assert due.action == Release((TenantName("ollama"),), 1 * GIB, 100, TenantName("plex"))
    assert due.low_since is None  # the next release waits its own `for`


def test_room_back_clears_the_pressure() -> None:
    out = decide(gpu(2.5, low_since=100.0), seed_001(), [], now=200.0)
    assert (out.action, out.low_since) == (None, None)


def test_a_busy_ollama_is_kept_and_the_idle_whisper_released() -> None:
    out = decide(gpu(1, low_since=0.0), seed_001(ollama_idle=False), [], now=10.0)
    assert out.action == Release((TenantName("whisper"),), 1 * GIB, 100, TenantName("plex"))


def test_nothing_idle_nothing_released_and_status_says_why() -> None:
    out = decide(
        gpu(1, low_since=0.0), seed_001(ollama_idle=False, whisper_idle=False), [], now=10.0
    )
    assert out.action is None
    assert "whisper is busy" in out.why
    assert "ollama is busy" in out.why


def test_headroom_of_active_tenants_raises_what_is_kept_free() -> None:
    tenants = [tenant("plex", 100, 1, headroom_gib=1.5), tenant("tts", 90, 1, headroom_gib=1)]
    assert required_free(SPEC, tenants) == int(2.5 * GIB)
    tenants.append(tenant("plex2", 100, 0, headroom_gib=4))  # holds nothing: not active
    assert required_free(SPEC, tenants) == int(2.5 * GIB)


def test_restore_waits_for_room_for_restore_after_then_highest_priority() -> None:
    released = [
        Released(name=TenantName("ollama"), priority=10, size=5 * GIB, released_at=0, cooldown=60),
        Released(name=TenantName("whisper"), priority=50, size=3 * GIB, released_at=0, cooldown=60),
    ]
    tenants = [tenant("plex", 100, 1)]
    # whisper needs 3 + 2 + 1 GiB free.
    short = decide(gpu(5.9), tenants, released, now=100.0)
    assert short.action is None
    assert "whisper needs 6" in short.why
    start = decide(gpu(6), tenants, released, now=100.0)
    assert (start.action, start.room_since, start.room_for) == (None, 100.0, "whisper")
    held = dataclass_replace(gpu(6), room_since=100.0, room_for=TenantName("whisper"))
    assert decide(held, tenants, released, now=159.0).action is None
    assert decide(held, tenants, released, now=160.0).action == Restore(TenantName("whisper"))


def test_restore_never_within_the_cooldown_nor_into_room_promised_to_a_job() -> None:
    released = [
        Released(name=TenantName("ollama"), priority=10, size=GIB, released_at=50, cooldown=60)
    ]
    ready = dataclass_replace(gpu(11), room_since=0.0, room_for=TenantName("ollama"))
    assert decide(ready, [], released, now=100.0).action is None  # cooldown until 110
    assert decide(ready, [], released, now=110.0).action == Restore(TenantName("ollama"))
    promised = dataclass_replace(ready, promised=GIB)
    out = decide(promised, [], released, now=110.0)
    assert out.action is None
    assert "job" in out.why


def dataclass_replace(g: GuardGpu, **changes: object) -> GuardGpu:
    import dataclasses

    return dataclasses.replace(g, **changes)  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------------

tenants_st = st.lists(
    st.builds(
        tenant,
        name=st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]),
        priority=st.integers(0, 5),
        held_gib=st.integers(0, 6),
        idle=st.booleans(),
        headroom_gib=st.sampled_from([0, 0, 1, 3]),
        preemptible=st.booleans(),
        state=st.sampled_from(["running", "running", "running", "released"]),
        cooldown_until=st.sampled_from([None, None, 5.0, 50.0]),
    ),
    max_size=8,
    unique_by=lambda t: t.state.name,
)


@settings(max_examples=400, deadline=None)
@given(tenants=tenants_st, free_gib=st.integers(-2, 12), now=st.sampled_from([10.0, 100.0]))
def test_the_guard_releases_only_what_the_order_allows(
    tenants: list[GuardTenant], free_gib: int, now: float
) -> None:
    out = decide(gpu(free_gib, low_since=0.0), tenants, [], now=now)
    if not isinstance(out.action, Release):
        return
    by_name = {t.state.name: t for t in tenants}
    victims = [by_name[v] for v in out.action.victims]
    top = max(t.state.priority for t in tenants if t.active)
    candidates = [
        t
        for t in tenants
        if t.active
        and t.idle
        and t.state.preemptible
        and t.state.priority < top
        and (t.state.cooldown_until is None or t.state.cooldown_until <= now)
    ]
    for v in victims:
        # Never a tenant of the priority of the one that needs the room, or higher.
        assert v.state.priority < out.action.priority == top
        assert v in candidates  # idle, preemptible, running, past its cooldown
    # The victims bring the room back ...
    assert sum(v.state.held for v in victims) >= out.action.need
    # ... and no tenant is released while lower-priority idle ones could have been instead:
    # those below the highest victim's priority, all together, would not have been enough.
    highest = max(v.state.priority for v in victims)
    lower = [c for c in candidates if c.state.priority < highest]
    assert sum(c.state.held for c in lower) < out.action.need


@settings(max_examples=200, deadline=None)
@given(tenants=tenants_st, free_gib=st.integers(-2, 12), low_for=st.floats(0, 4.99))
def test_nothing_is_released_before_the_pressure_lasted_for(
    tenants: list[GuardTenant], free_gib: int, low_for: float
) -> None:
    assert decide(gpu(free_gib, low_since=100.0), tenants, [], now=100.0 + low_for).action is None


released_st = st.lists(
    st.builds(
        Released,
        name=st.sampled_from([TenantName(n) for n in "pqrst"]),
        priority=st.integers(0, 5),
        size=st.integers(0, 6).map(lambda g: g * GIB),
        released_at=st.sampled_from([0.0, 80.0]),
        cooldown=st.sampled_from([0.0, 30.0]),
    ),
    max_size=5,
    unique_by=lambda r: r.name,
)


@settings(max_examples=400, deadline=None)
@given(
    released=released_st,
    free_gib=st.integers(0, 12),
    promised_gib=st.sampled_from([0, 0, 1]),
    waited=st.floats(0, 120),
)
def test_a_restore_needs_its_room_for_restore_after_and_no_promised_job(
    released: list[Released], free_gib: int, promised_gib: int, waited: float
) -> None:
    now = 100.0
    name = max(released, key=lambda r: (r.priority, r.name)).name if released else None
    g = dataclass_replace(
        gpu(free_gib, promised_gib=promised_gib), room_since=now - waited, room_for=name
    )
    out = decide(g, [], released, now=now)
    if not isinstance(out.action, Restore):
        return
    chosen = next(r for r in released if r.name == out.action.tenant)
    due = [r for r in released if now >= r.released_at + r.cooldown]
    assert chosen in due
    assert chosen.priority == max(r.priority for r in due)
    assert promised_gib == 0
    assert free_gib * GIB >= chosen.size + SPEC.min_free + SPEC.restore_above
    assert waited >= SPEC.restore_after


def _phase(out: Outcome) -> tuple[bool, bool]:
    """(under pressure, a released tenant has room to come back)."""
    pressure = out.low_since is not None or isinstance(out.action, Release)
    room = out.room_since is not None or isinstance(out.action, Restore)
    return pressure, room


@settings(max_examples=400, deadline=None)
@given(
    tenants=tenants_st,
    released=released_st,
    frees=st.lists(st.integers(-4, 28).map(lambda h: h * GIB // 2), min_size=2, max_size=2),
    promised_gib=st.sampled_from([0, 0, 1]),
    timers=st.tuples(st.sampled_from([None, 1.0, 10.0]), st.sampled_from([None, 1.0, 100.0])),
)
def test_between_the_watch_lines_the_guard_never_changes_phase(
    tenants: list[GuardTenant],
    released: list[Released],
    frees: list[int],
    promised_gib: int,
    timers: tuple[float | None, float | None],
) -> None:
    """The pressure sampler wakes the engine only when free memory crosses a watch line: any
    two readings on the same side of every line must leave the guard in the same phase."""
    now = 100.0
    low_for, waited = timers  # how long the pressure, and the room, have lasted
    best = max(released, key=lambda r: (r.priority, r.name)).name if released else None

    def at(free: int) -> GuardGpu:
        return dataclass_replace(
            gpu(0, promised_gib=promised_gib, low_since=None if low_for is None else now - low_for),
            free=free,
            room_since=None if waited is None else now - waited,
            room_for=best,
        )

    a, b = frees
    lines = watch_lines(at(a), tenants, released, now)
    assert lines == watch_lines(at(b), tenants, released, now)  # they do not move with free
    if any((a >= line) != (b >= line) for line in lines):
        return
    assert _phase(decide(at(a), tenants, released, now)) == _phase(
        decide(at(b), tenants, released, now)
    )
