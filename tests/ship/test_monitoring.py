"""deploy/grafana/gpuherd.json and deploy/prometheus/gpuherd-rules.yaml against a real scrape:
every metric (and every label a selector names) they use is in /metrics of a broker that just
ran a release cycle on the simulated GPU, and the rules file is a valid set of Prometheus rule
groups (the structure of https://prometheus.io/docs/prometheus/latest/configuration/
recording_rules/ and alerting_rules/, checked field by field: promtool is not on PyPI)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gpuherd.api.app import create_app
from gpuherd.broker.daemon import Daemon
from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import Journal
from gpuherd.broker.service import Broker
from gpuherd.gpu.sim import SimBackend
from gpuherd.spec import parse_config
from tests.conftest import HolderFactory, gpuherd_argv

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "gpuherd-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "gpuherd.json"
# Used by a rule before the broker emits it (none now: the guard's metrics have landed).
PENDING: set[str] = set()

DURATION = re.compile(r"^(?=\d)((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
GROUP_KEYS = {"name", "interval", "limit", "rules", "query_offset", "labels"}
ALERT_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
RECORD_KEYS = {"record", "expr", "labels"}


def rule_group_errors(doc: Any) -> list[str]:
    """What makes `doc` not a Prometheus rule file, as 'where: what' lines."""
    errors: list[str] = []
    if not isinstance(doc, dict) or set(doc) != {"groups"} or not isinstance(doc["groups"], list):
        return ["top level: a mapping with one key, groups (a list)"]
    names: set[str] = set()
    for g, group in enumerate(doc["groups"]):
        where = f"groups[{g}]"
        if not isinstance(group, dict):
            errors.append(f"{where}: not a mapping")
            continue
        errors += [f"{where}: unknown field {k}" for k in set(group) - GROUP_KEYS]
        name = group.get("name")
        if not isinstance(name, str) or not name:
            errors.append(f"{where}.name: a non-empty string is required")
        elif name in names:
            errors.append(f"{where}.name: {name} repeats another group's name")
        names.add(str(name))
        if "interval" in group and not DURATION.match(str(group["interval"])):
            errors.append(f"{where}.interval: not a duration")
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            errors.append(f"{where}.rules: a non-empty list is required")
            continue
        for r, rule in enumerate(rules):
            errors += rule_errors(f"{where}.rules[{r}]", rule)
    return errors


def rule_errors(where: str, rule: Any) -> list[str]:
    if not isinstance(rule, dict):
        return [f"{where}: not a mapping"]
    errors: list[str] = []
    if ("alert" in rule) == ("record" in rule):
        return [f"{where}: exactly one of alert and record"]
    allowed = ALERT_KEYS if "alert" in rule else RECORD_KEYS
    errors += [f"{where}: unknown field {k}" for k in set(rule) - allowed]
    if "record" in rule and not METRIC_NAME.match(str(rule["record"])):
        errors.append(f"{where}.record: not a metric name")
    if "alert" in rule and not (isinstance(rule["alert"], str) and rule["alert"]):
        errors.append(f"{where}.alert: a non-empty string is required")
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        errors.append(f"{where}.expr: a non-empty PromQL string is required")
    elif expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        errors.append(f"{where}.expr: unbalanced brackets")
    for key in ("for", "keep_firing_for"):
        if key in rule and not DURATION.match(str(rule[key])):
            errors.append(f"{where}.{key}: not a duration")
    for key in ("labels", "annotations"):
        value = rule.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and LABEL_NAME.match(k) and isinstance(v, str)
            for k, v in value.items()
        ):
            errors.append(f"{where}.{key}: a mapping of label names to strings")
    return errors


def exprs() -> dict[str, str]:
    """Every PromQL expression of the rules and the dashboard, by where it is."""
    found = {
        f"rule {r['alert']}": r["expr"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
    }
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


@pytest.fixture
def scrape(sim_dir: Path, tmp_path: Path, holder: HolderFactory) -> Iterator[str]:
    """/metrics of a broker whose job released a tenant, ran, and had it restored."""
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    holder("--vram", "8GiB", "--name", "whisper")
    config = parse_config(
        f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
tenants:
  whisper:
    gpu: gpu0
    vram: 8GiB
    priority: 10
    max_downtime: 10m
    match: {{cmdline: "--name whisper"}}
    preempt: [{{signal: {{grace: 5s, start: [{hold}, '--vram', '8GiB', '--name', 'whisper']}}}}]
jobs:
  render: {{gpu: gpu0, vram: 6GiB, priority: 50, timeout: 1m, command: [{hold}, '--vram', '6GiB', '--for', '0.5s']}}
""",
        source="gpuherd.yaml",
    )
    engine = Engine(
        config=config,
        backend=SimBackend(sim_dir),
        journal=Journal(tmp_path / "journal.db"),
        state_dir=tmp_path,
        poll=0.05,
    )
    daemon = Daemon(engine, poll_interval=0.05)
    daemon.start()
    try:
        client = TestClient(create_app(Broker(daemon)))
        job = client.post("/v1/jobs", json={"name": "render"}).json()["id"]
        client.post("/v1/jobs", json={"name": "render", "not_before": time.time() + 3600})
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job}").json()["state"] != "succeeded":
            assert time.monotonic() < deadline, client.get(f"/v1/jobs/{job}").json()
            time.sleep(0.1)
        yield client.get("/metrics").text
    finally:
        daemon.stop()
        engine.journal.close()


def test_every_metric_and_label_used_is_scraped(scrape: str) -> None:
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    used = exprs()
    assert len(used) > 20
    for where, expr in used.items():
        for name in set(re.findall(r"\bgpuherd_[a-z0-9_]+", expr)) - PENDING:
            assert name in labels, f"{where}: {name} is not in /metrics"
        for name, matchers in re.findall(r"\b(gpuherd_[a-z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", matchers):
                assert label in labels.get(name, {label}), f"{where}: {name} has no {label}"
        for label in re.findall(r"\bby \(([^)]*)\)|on \(([^)]*)\)", expr):
            for name in filter(None, ",".join(label).replace(" ", "").split(",")):
                metrics = set(re.findall(r"\bgpuherd_[a-z0-9_]+", expr)) - PENDING
                assert any(name in labels.get(m, set()) for m in metrics), (
                    f"{where}: no metric there has a {name} label"
                )
    for name in PENDING:
        assert name not in labels, f"{name} is emitted now: drop it from PENDING"


def test_rules_file_is_prometheus_rule_groups() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert rule_group_errors(doc) == []
    alerts = {r["alert"] for g in doc["groups"] for r in g["rules"]}
    assert {
        "GpuherdRestoreFailing",
        "GpuherdTenantDownTooLong",
        "GpuherdGuardFlapping",
        "GpuherdJobWaitingLong",
        "GpuherdEngineDown",
    } <= alerts


def test_the_rule_checker_catches_what_prometheus_refuses() -> None:
    good = {"alert": "A", "expr": "up == 0", "for": "5m", "labels": {"severity": "page"}}
    assert rule_group_errors({"groups": [{"name": "g", "rules": [good]}]}) == []
    bad = [
        ({"group": []}, "top level"),
        ({"groups": [{"name": "g", "rules": [good]}, {"name": "g", "rules": [good]}]}, "repeats"),
        ({"groups": [{"name": "g", "rules": [{**good, "for": "5 minutes"}]}]}, "for: not a"),
        ({"groups": [{"name": "g", "rules": [{**good, "record": "x"}]}]}, "exactly one"),
        ({"groups": [{"name": "g", "rules": [{**good, "expr": "sum(up"}]}]}, "unbalanced"),
        ({"groups": [{"name": "g", "rules": [{**good, "severity": "x"}]}]}, "unknown field"),
        ({"groups": [{"name": "g", "rules": [{**good, "labels": {"a-b": "x"}}]}]}, "labels"),
        ({"groups": [{"name": "g", "rules": [{"record": "a b", "expr": "up"}]}]}, "metric name"),
        ({"groups": [{"name": "g", "rules": []}]}, "non-empty list"),
    ]
    for doc, expected in bad:
        errors = rule_group_errors(doc)
        assert any(expected in e for e in errors), (doc, errors)


def test_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "gpuherd"
    assert any(v["type"] == "datasource" for v in dash["templating"]["list"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["targets"], panel["title"]
