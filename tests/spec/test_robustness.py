"""No input makes the config loader fail with anything but a positioned SpecError."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuherd.spec import SpecError, SpecIssue, parse_config

_keys = st.sampled_from(
    [
        "version",
        "gpus",
        "tenants",
        "jobs",
        "vram",
        "typical",
        "peak",
        "name",
        "memory",
        "gpu",
        "priority",
        "preempt",
        "match",
        "active",
        "cron",
        "for",
        "command",
        "success",
        "x",
        "<<",
    ]
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**40),
    st.floats(allow_nan=True),
    st.sampled_from(["1GiB", "always", "auto", "0 4 * * *", "gpu0", "70%", "", "~", "-1"]),
    st.text(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=20,
)


def _issues(text: str) -> list[SpecIssue]:
    """Issues of a rejected config (never empty), or [] when it loads; anything else escapes."""
    try:
        parse_config(text, source="fuzz.yaml")
    except SpecError as exc:
        issues = exc.issues
    else:
        return []
    assert issues, "a SpecError must say what is wrong"
    return issues


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(_keys, _values, max_size=6), version=st.sampled_from([1, 2, None]))
def test_structured_garbage_is_a_spec_error(doc: dict[str, object], version: int | None) -> None:
    if version is not None:
        doc["version"] = version
    issues = _issues(yaml.safe_dump(doc))
    assert all(i.pos.line >= 1 and i.pos.column >= 1 for i in issues)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`,? \n\t0123456789")), max_size=80
    )
)
def test_raw_text_is_a_spec_error_or_loads(text: str) -> None:
    _issues(text)
