"""Noticing a lost journal: the broker leaves a mark beside it (the journal's identity and the
last event it wrote), and refuses to start on a journal that contradicts the mark.

A deleted or truncated WAL, or a journal replaced by a fresh one, would otherwise start the
broker with an empty memory: tenants released forever while `status` says "running".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gpuherd.broker.journal import Journal

MARK = "journal.mark"


class JournalLost(Exception):
    pass


def write_mark(state_dir: Path, journal: Journal) -> None:
    """Atomically, and only when it moved on: a small write and fsync per busy step."""
    ident, last = journal.identity()
    path = state_dir / MARK
    text = json.dumps({"journal": ident, "last_event": last})
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{MARK}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def check_mark(state_dir: Path, journal: Journal) -> None:
    """Raise JournalLost when the journal is not the one the broker last wrote, or ends
    before the last event it wrote."""
    try:
        mark = json.loads((state_dir / MARK).read_text())
    except FileNotFoundError:
        return  # a new state dir
    except (OSError, ValueError) as exc:
        raise JournalLost(f"{state_dir / MARK} cannot be read: {exc}") from None
    ident, last = journal.identity()
    if mark.get("journal") != ident:
        raise JournalLost(
            f"the journal in {state_dir} is not the one this broker last wrote "
            "(it was replaced or deleted): what was released and not yet restored is unknown"
        )
    if last < int(mark.get("last_event", 0)):
        raise JournalLost(
            f"the journal in {state_dir} ends at event {last}, but the broker had written up "
            f"to event {mark['last_event']}: its write-ahead log was lost or truncated"
        )
