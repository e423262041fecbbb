"""NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES: their syntax and meaning.

One implementation for `doctor` (a live environment) and `lint` (env entries in manifests).
"""

from __future__ import annotations

import re

CAPABILITIES = frozenset({"compute", "compat32", "graphics", "utility", "video", "display", "ngx"})
DEFAULT_CAPABILITIES = frozenset({"utility", "compute"})
_DEVICE_TOKEN = re.compile(r"^(\d+|\d+:\d+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-zA-Z/-]+)$")


def parse_visible(value: str) -> tuple[list[str], str | None]:
    """Tokens of NVIDIA_VISIBLE_DEVICES, and an error message when the syntax is wrong."""
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    if not tokens:
        return [], None
    if len(tokens) == 1 and tokens[0] in ("all", "none", "void"):
        return tokens, None
    if any(t in ("all", "none", "void") for t in tokens):
        return tokens, "'all', 'none' and 'void' cannot be mixed with device ids"
    bad = [t for t in tokens if not _DEVICE_TOKEN.match(t)]
    if bad:
        return tokens, f"not a device index, UUID or MIG id: {', '.join(bad)}"
    return tokens, None


def grants_gpus(value: str) -> bool:
    """True when the value makes the NVIDIA runtime inject GPUs (all, indices, UUIDs)."""
    tokens, _error = parse_visible(value)
    return bool(tokens) and tokens[0] not in ("none", "void")


def effective_capabilities(value: str | None) -> tuple[set[str], list[str]]:
    """(capabilities the runtime will mount, unknown tokens). Unset or empty = utility,compute."""
    if value is None or not value.strip():
        return set(DEFAULT_CAPABILITIES), []
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    if "all" in tokens:
        return set(CAPABILITIES), [t for t in tokens if t != "all" and t not in CAPABILITIES]
    return {t for t in tokens if t in CAPABILITIES}, [t for t in tokens if t not in CAPABILITIES]


# Words in an image name or command line that show which driver capabilities a workload uses.
NEED_KEYWORDS: dict[str, tuple[str, ...]] = {
    "video": ("ffmpeg", "plex", "jellyfin", "emby", "tdarr", "immich", "handbrake", "nvenc"),
    "graphics": ("xvfb", "blender", "factorio", "mapshot", "gazebo", "kasm", "steam", "unreal"),
    "compute": ("cuda", "pytorch", "tensorflow", "vllm", "ollama", "nvidia-smi", "llama.cpp"),
}


def needs_from_text(text: str) -> dict[str, str]:
    """capability -> the word that shows it is needed, from an image/command/args text."""
    lowered = text.lower()
    found: dict[str, str] = {}
    for capability, words in NEED_KEYWORDS.items():
        for word in words:
            if word in lowered:
                found[capability] = word
                break
    return found
