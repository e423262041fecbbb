"""Real-world GPU configurations from public repositories: exactly the hand-reviewed findings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuherd.lint.engine import LintOptions, discover, lint_sources

HERE = Path(__file__).parent / "realworld"
EXPECTED: dict[str, list[dict[str, Any]]] = yaml.safe_load((HERE / "expected.yaml").read_text())


def findings_of(case: str) -> list[str]:
    files = discover([HERE / case])
    result = lint_sources([(str(p), p.read_text()) for p in files], LintOptions())
    root = f"{HERE / case}/"
    return [
        f"{f.file.removeprefix(root)}:{f.line}:{f.column} {f.severity} {f.rule}"
        for f in result.findings
    ]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_exact_findings(case: str) -> None:
    assert findings_of(case) == [e["finding"] for e in EXPECTED[case]]


def test_every_stored_file_has_a_source_and_a_case() -> None:
    stored = {
        str(p.relative_to(HERE))
        for p in HERE.rglob("*")
        if p.is_file() and p.name not in ("SOURCES", "README.md", "expected.yaml")
    }
    sources = {}
    for line in (HERE / "SOURCES").read_text().splitlines():
        if line and not line.startswith("#"):
            name, url, path, commit = line.split()
            assert url.startswith("https://github.com/"), line
            assert re.fullmatch(r"[0-9a-f]{40}", commit), line
            assert path.replace("/", "_").endswith(name.split("/", 1)[1]), line
            sources[name] = url
    assert stored == set(sources)
    assert {name.split("/")[0] for name in stored} == set(EXPECTED)
    assert len(stored) >= 20


def test_readme_states_the_precision() -> None:
    verdicts = [e["verdict"] for case in EXPECTED.values() for e in case]
    assert set(verdicts) <= {"right", "wrong"}
    right = verdicts.count("right")
    line = f"precision {right}/{len(verdicts)}"
    assert line in (HERE / "README.md").read_text()


def test_all_cases_in_one_run_give_the_same_findings() -> None:
    """Linting every case at once (a monorepo of unrelated projects) adds nothing."""
    files = discover([HERE])
    result = lint_sources([(str(p), p.read_text()) for p in files], LintOptions())
    together = sorted(
        f"{Path(f.file).relative_to(HERE)}:{f.line}:{f.column} {f.severity} {f.rule}"
        for f in result.findings
    )
    separately = sorted(f"{case}/{e['finding']}" for case in EXPECTED for e in EXPECTED[case])
    assert together == separately
