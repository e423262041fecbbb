"""Shell completion (typer's): `gpuherd --show-completion` prints a script, and the completer
it calls answers with real commands and flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GPUHERD = str(Path(sys.executable).parent / "gpuherd")  # the console script pip installed


def complete(words: str) -> list[str]:
    env = os.environ | {
        "_GPUHERD_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    done = subprocess.run([GPUHERD], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_completion_script_and_answers() -> None:
    script = subprocess.run(
        [GPUHERD, "--show-completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    assert "_GPUHERD_COMPLETE=complete_bash" in script
    assert "complete -o default -F _gpuherd_completion gpuherd" in script
    assert complete("gpuherd ser") == ["serve"]
    assert "--socket-group" in complete("gpuherd serve --socket-g")
    assert {"submit", "status"} <= set(complete("gpuherd s"))
