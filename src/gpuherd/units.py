"""Parsing and printing of the units people write in gpuherd.yaml: byte sizes, durations, cron.

Byte sizes follow the usual convention: binary suffixes (KiB, MiB, GiB, TiB and the Kubernetes
forms Ki, Mi, Gi, Ti) are powers of 1024; decimal suffixes (K, KB, M, MB, G, GB, T, TB) are
powers of 1000, so `12G` is 12,000,000,000 bytes; a plain integer is a number of bytes.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "UnitError",
    "format_bytes",
    "format_duration",
    "parse_bytes",
    "parse_cron",
    "parse_duration",
    "parse_fraction",
]


class UnitError(ValueError):
    """A value that does not parse as the unit it should be; the message says what is expected."""


_BYTE_FACTORS: dict[str, int] = {
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)\s*$")
_SIZE_HINT = "a size such as 512MiB, 12GiB, 12G (decimal) or a whole number of bytes"


def parse_bytes(value: object) -> int:
    """Return the number of bytes `value` stands for; raise UnitError when it is not a size."""
    if isinstance(value, bool):
        raise UnitError(f"expected {_SIZE_HINT}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"a size cannot be negative, got {value}")
        return value
    if isinstance(value, float):
        raise UnitError(f"a bare number is a count of bytes and must be whole; got {value!r}")
    if not isinstance(value, str):
        raise UnitError(f"expected {_SIZE_HINT}, got {type(value).__name__}")
    match = _SIZE_RE.match(value)
    if match is None:
        raise UnitError(f"expected {_SIZE_HINT}, got {value!r}")
    number, unit = match.groups()
    if not unit:
        if "." in number:
            raise UnitError(f"a bare number is a count of bytes and must be whole; got {value!r}")
        return int(number)
    factor = _BYTE_FACTORS.get(unit.lower())
    if factor is None:
        raise UnitError(f"unknown size unit {unit!r} in {value!r}; use B, KiB, MiB, GiB, TiB or G")
    return round(float(number) * factor)


_DURATION_FACTORS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_HINT = "a duration such as 90s, 30m, 2h, 1h30m or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds for `90s`, `30m`, `2h`, `1d`, `1h30m`, `500ms` or a plain number of seconds."""
    if isinstance(value, bool):
        raise UnitError(f"expected {_DURATION_HINT}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise UnitError(f"a duration must be a finite number >= 0, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"expected {_DURATION_HINT}, got {type(value).__name__}")
    text = value.strip().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    pos = 0
    total = 0.0
    for part in _DURATION_PART.finditer(text):
        if part.start() != pos:
            break
        total += float(part.group(1)) * _DURATION_FACTORS[part.group(2)]
        pos = part.end()
    if pos != len(text) or not text:
        raise UnitError(f"expected {_DURATION_HINT}, got {value!r}")
    return total


def parse_fraction(value: object) -> float:
    """A share of one GPU's memory: a number in (0, 1], or a percentage string such as `70%`."""
    number: float
    if isinstance(value, bool):
        raise UnitError(f"expected a fraction between 0 and 1 such as 0.7, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise UnitError(f"expected a percentage such as 70%, got {value!r}") from None
    else:
        raise UnitError(f"expected a fraction between 0 and 1 such as 0.7, got {value!r}")
    if not 0.0 < number <= 1.0:
        raise UnitError(f"a fraction of a GPU must be above 0 and at most 1, got {value!r}")
    return number


def parse_cron(value: object) -> str:
    """Validate a 5-field cron expression (or @daily style alias) and return it unchanged."""
    if not isinstance(value, str) or not value.strip():
        raise UnitError(f"expected a cron expression such as '0 4 * * *', got {value!r}")
    expr = value.strip()
    fields = len(expr.split())
    if not expr.startswith("@") and fields != 5:
        raise UnitError(
            f"invalid cron expression {value!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), found {fields}"
        )
    from croniter import croniter  # imported here: most commands never parse cron strings

    try:
        croniter(expr)
    except (ValueError, KeyError) as exc:
        raise UnitError(f"invalid cron expression {value!r}: {exc}") from None
    return expr


_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(value: int | None, *, precision: int = 1) -> str:
    """Human form with binary units: 12884901888 -> '12.0 GiB'; None -> '-'."""
    if value is None:
        return "-"
    size = float(value)
    for unit in _BINARY_UNITS:
        if abs(size) < 1024.0 or unit == _BINARY_UNITS[-1]:
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.{precision}f} {unit}"
        size /= 1024.0
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float) -> str:
    """Short human form: 0.25 -> '250ms', 90 -> '1m30s', 7200 -> '2h'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        text = f"{seconds:.1f}".rstrip("0").rstrip(".")
        return f"{text}s"
    whole = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, whole = divmod(whole, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
