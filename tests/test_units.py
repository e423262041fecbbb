"""Every unit form gpuherd.yaml accepts, and the errors for the ones it refuses."""

import pytest

from gpuherd.units import (
    UnitError,
    format_bytes,
    format_duration,
    parse_bytes,
    parse_cron,
    parse_duration,
    parse_fraction,
)

GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MiB", 512 * 1024**2),
        ("12GiB", 12 * GIB),
        ("12Gi", 12 * GIB),
        ("12G", 12_000_000_000),
        ("12GB", 12_000_000_000),
        ("1.5GiB", 3 * GIB // 2),
        ("1TiB", 1024**4),
        ("2T", 2 * 1000**4),
        ("64KiB", 65536),
        ("64k", 64000),
        ("100B", 100),
        ("7 GiB", 7 * GIB),
        ("0", 0),
        ("4096", 4096),
        (4096, 4096),
        (".5GiB", GIB // 2),
    ],
)
def test_byte_sizes(text: object, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("12 parsecs", "unknown size unit 'parsecs'"),
        ("GiB", "expected a size"),
        ("-1GiB", "expected a size"),
        (-5, "cannot be negative"),
        (1.5, "must be whole"),
        ("1.5", "must be whole"),
        (True, "expected a size"),
        ([1], "got list"),
        ("", "expected a size"),
    ],
)
def test_byte_size_errors(value: object, fragment: str) -> None:
    with pytest.raises(UnitError, match=fragment):
        parse_bytes(value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("45", 45.0),
        (45, 45.0),
        (2.5, 2.5),
        ("1h 30m", 5400.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", ["soon", "30x", "m30", "1h30", "", -1, float("inf"), True, None])
def test_duration_errors(value: object) -> None:
    with pytest.raises(UnitError):
        parse_duration(value)


@pytest.mark.parametrize(("value", "expected"), [(0.7, 0.7), (1, 1.0), ("70%", 0.7)])
def test_fractions(value: object, expected: float) -> None:
    assert parse_fraction(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [0, 1.2, -0.1, "x%", "0.7", True])
def test_fraction_errors(value: object) -> None:
    with pytest.raises(UnitError):
        parse_fraction(value)


@pytest.mark.parametrize("expr", ["0 4 * * *", "*/15 * * * 1-5", "@daily", "0 18 * * mon-fri"])
def test_cron_valid(expr: str) -> None:
    assert parse_cron(expr) == expr


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("0 4 * *", "found 4"),
        ("0 25 * * *", "out of range"),
        ("0 4 * * * *", "found 6"),
        ("", "expected a cron expression"),
        (5, "expected a cron expression"),
        ("@sometimes", "invalid cron expression"),
    ],
)
def test_cron_errors(expr: object, fragment: str) -> None:
    with pytest.raises(UnitError, match=fragment):
        parse_cron(expr)


def test_format_bytes() -> None:
    assert format_bytes(12 * GIB) == "12.0 GiB"
    assert format_bytes(512 * 1024**2) == "512.0 MiB"
    assert format_bytes(100) == "100 B"
    assert format_bytes(None) == "-"


def test_format_duration() -> None:
    assert format_duration(0.25) == "250ms"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(90) == "1m30s"
    assert format_duration(7200) == "2h"
