"""Safe steps through parsed user data, where any value may have any type."""

from __future__ import annotations

from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def dig(data: Any, *path: str) -> Any:
    """data[path[0]][path[1]]...; None as soon as a step is not a mapping or is missing."""
    for step in path:
        if not isinstance(data, dict):
            return None
        data = data.get(step)
    return data
