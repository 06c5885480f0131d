"""Hugging Face hub reachability, checked once and quickly before any download is attempted."""

from __future__ import annotations

import os

from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.utils import get_session


def hub_model_available(repo_id: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Whether a hub model can be loaded now: in the local cache, or the hub answers one request within
    ``timeout`` seconds. ``transformers`` retries an unreachable hub with back-off for about two minutes,
    which an offline run should not wait for. Returns ``(available, reason)``."""
    if any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in ("config.json", "model.pt")):
        return True, "cached"
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False, "not in the local cache and HF_HUB_OFFLINE is set"
    try:
        r = get_session().head(f"{constants.ENDPOINT}/api/models/{repo_id}", timeout=timeout)
    except Exception as e:  # DNS, connection, timeout: all mean "not now"
        return False, f"hub unreachable ({type(e).__name__})"
    return (r.status_code < 400, f"hub answered HTTP {r.status_code}")
