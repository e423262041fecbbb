"""Judgements on container-runtime GPU wiring, shared by `doctor` (on a host) and `lint` (on files).

Each judge reads one config file's parsed content and returns `Judgement`s; where a judgement
depends on the filesystem (does this binary exist? is it a wrapper around the nvidia runtime?),
it looks under a `Root`, so the same code judges the live host and a captured tree.
"""

from gpuherd.runtimecfg.base import Judgement, Root, Severity

__all__ = ["Judgement", "Root", "Severity"]
