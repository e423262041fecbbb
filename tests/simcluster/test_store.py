"""The store's version counter and its bounded history, without HTTP."""

from __future__ import annotations

import pytest

from gpuherd.simcluster.errors import ApiError
from gpuherd.simcluster.resources import BY_KIND
from gpuherd.simcluster.store import Store

NS = BY_KIND["Namespace"]


def test_one_counter_and_a_bounded_history() -> None:
    store = Store(history=3)
    versions = [
        int(store.create(NS, {"metadata": {"name": f"n{i}"}})["metadata"]["resourceVersion"])
        for i in range(5)
    ]
    assert versions == sorted(versions)
    assert len(set(versions)) == 5
    assert [e.rv for e in store.events_after(versions[2])] == versions[3:]
    with pytest.raises(ApiError) as exc:  # the window holds three changes; v1 fell out
        store.events_after(versions[0])
    assert (exc.value.code, exc.value.reason) == (410, "Expired")
    assert exc.value.message == f"too old resource version: {versions[0]} ({versions[-1]})"


def test_a_no_op_update_keeps_the_version() -> None:
    store = Store()
    made = store.create(NS, {"metadata": {"name": "a", "labels": {"x": "1"}}})
    same = store.update(NS, made)
    assert same["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    made["metadata"]["labels"]["x"] = "2"
    changed = store.update(NS, made)
    assert int(changed["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
    with pytest.raises(ApiError) as exc:
        store.update(NS, made)  # made carries the old version now
    assert exc.value.code == 409
