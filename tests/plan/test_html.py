"""The HTML plan: self-contained, one chart per GPU, and it really renders in Chromium."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from datetime import date
from pathlib import Path

import pytest

from gpuherd.plan.html import render_html
from gpuherd.plan.report import make_plan
from gpuherd.spec import load_config

ROOT = Path(__file__).resolve().parents[2]


def homelab_html() -> str:
    return render_html(
        make_plan(load_config(ROOT / "examples" / "homelab.yaml"), week_start=date(2026, 11, 23))
    )


def test_self_contained_with_a_chart_per_gpu() -> None:
    page = homelab_html()
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 2
    assert page.count("<polygon") == 5 + 2  # a band per member: 5 on the 3080 Ti, 2 on the Ada
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert "<script" not in page
    assert "needs-preemption" in page
    assert "over" in page
    assert "mapshot-render needs ollama-ada released, 210 minutes a week" in page


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG into rows of raw pixels (no imaging library needed)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, channels, rows


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not installed (make test installs it where it can)",
)
def test_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "plan.html"
    page.write_text(homelab_html())
    shot = tmp_path / "plan.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    width, channels, rows = _pixels(shot.read_bytes())
    assert width == 1200
    # Ollama's band: #4e79a7 at 85% opacity over the #fafafa chart background.
    want = tuple(round(0.85 * v + 0.15 * 250) for v in (0x4E, 0x79, 0xA7))
    band = sum(
        1
        for row in rows
        for x in range(0, len(row), channels)
        if all(abs(row[x + i] - want[i]) <= 3 for i in range(3))
    )
    assert band > 20_000, f"only {band} pixels of the chart's first band were drawn"
