"""`gpuherd setup runtime`: wire the NVIDIA runtime into Docker, containerd, k3s/RKE2 and MicroK8s.

Every edit is structural (JSON, TOML that keeps comments), shown as a unified diff first, written
atomically beside a timestamped backup, recorded so `--undo` can put the original bytes back, and
idempotent: a second run finds the wiring in place and changes nothing.
"""

from gpuherd.setup.model import Change, Outcome, Plan, Refusal, SetupInputError

__all__ = ["Change", "Outcome", "Plan", "Refusal", "SetupInputError"]
