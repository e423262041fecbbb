"""Randomized kill -9 of a real broker (a few seeds here; many in bench/broker_chaos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.broker.chaos import trial


@pytest.mark.parametrize("seed", [1, 2])
def test_random_kills_lose_nothing_and_run_nothing_twice(seed: int, tmp_path: Path) -> None:
    outcome = trial(tmp_path, seed, jobs=3, kills=3)
    assert outcome.ok, outcome
