"""Label selectors (query strings and LabelSelector objects) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from gpuherd.simcluster.errors import bad_request

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

_SET_RE = re.compile(r"^\s*(!)?\s*([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses: `a in (x,y),b` is two terms."""
    terms, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        terms.append(current)
    return terms


def _term(term: str) -> Callable[[Mapping[str, str]], bool]:
    eq = _EQ_RE.match(term)
    if eq is not None:
        key, op, value = eq.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    found = _SET_RE.match(term)
    if found is None:
        raise bad_request(f"unable to parse requirement: {term.strip()!r}")
    negated, key, op, values = found.groups()
    if op is None:
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    options = {v.strip() for v in values.split(",")}
    if op == "in":
        return lambda labels: labels.get(key) in options
    return lambda labels: labels.get(key) not in options


def parse_label_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    if not text:
        return lambda _labels: True
    checks = [_term(t) for t in _split_terms(text)]
    return lambda labels: all(check(labels) for check in checks)


def match_label_selector(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector object (matchLabels, matchExpressions); an empty one matches all."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In":
            ok = labels.get(key) in values
        elif op == "NotIn":
            ok = labels.get(key) not in values
        elif op == "Exists":
            ok = key in labels
        else:
            ok = key not in labels
        if not ok:
            return False
    return True


def selector_string(selector: Obj | None) -> str:
    """The string form a Scale's status.selector carries."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key = expr["operator"], expr["key"]
        values = ",".join(sorted(expr.get("values") or []))
        parts.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[op]
        )
    return ",".join(parts)


def field_value(obj: Obj, path: str) -> str:
    """The string value of a dotted field path, "" when absent (as the server compares)."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return str(current).lower()
    return str(current)


_FIELDS = {
    "Pod": {
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "status.phase",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "Event": {
        "metadata.name",
        "metadata.namespace",
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "reason",
        "type",
        "source",
    },
    "Job": {"metadata.name", "metadata.namespace", "status.successful"},
    "Node": {"metadata.name", "spec.unschedulable"},
}


def parse_field_selector(text: str | None, kind: str) -> Predicate:
    if not text:
        return lambda _obj: True
    allowed = _FIELDS.get(kind, {"metadata.name", "metadata.namespace"})
    checks: list[Predicate] = []
    for term in text.split(","):
        negate = "!=" in term
        key, _, value = term.partition("!=") if negate else term.partition("=")
        key = key.strip()
        value = value.lstrip("=").strip()  # `==` is accepted like `=`
        if key not in allowed:
            raise bad_request(f"field label not supported: {key}")

        def check(obj: Obj, k: str = key, v: str = value, neg: bool = negate) -> bool:
            return (field_value(obj, k) == v) != neg

        checks.append(check)
    return lambda obj: all(c(obj) for c in checks)
