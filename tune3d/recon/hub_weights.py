"""``--weights`` as a Hugging Face model id (``naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt``,
``facebook/VGGT-1B``, ...): resolved through ``huggingface_hub``, the local cache first, then the hub.

A local path always wins. An id not in the cache while offline (``HF_HUB_OFFLINE=1``) or with the hub
unreachable is one user error line. The cache is ``HF_HUB_CACHE`` (or ``HF_HOME/hub``), read when called.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from tune3d.errors import Tune3DError, WeightsUnavailableError
from tune3d.hub import hub_model_available

#: Released checkpoints on the hub -> tune3d registry names (so ``--model`` may be left out).
HUB_MODELS = {
    "naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt": "dust3r_vitl_512_dpt",
    "naver/DUSt3R_ViTLarge_BaseDecoder_512_linear": "dust3r_vitl_512_linear",
    "naver/DUSt3R_ViTLarge_BaseDecoder_224_linear": "dust3r_vitl_224_linear",
    "naver/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric": "mast3r_vitl_512_catmlpdpt_metric",
    "facebook/VGGT-1B": "vggt_1b",
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def is_hub_id(spec: str | os.PathLike) -> bool:
    """``owner/name`` that is not an existing local path."""
    s = str(spec)
    return bool(_REPO_ID.match(s)) and not Path(s).exists()


def _cache_dir() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def resolve_weights(spec: str | os.PathLike, allow_patterns: list[str] | None = None) -> Path:
    """A local file/folder as is; a hub id -> its snapshot folder (cache first, then the hub).

    ``allow_patterns`` (globs) limits what a download fetches; None = the whole repository."""
    if not is_hub_id(spec):
        path = Path(spec)
        if not path.exists():
            raise Tune3DError(f"{path}: weights file not found")
        return path

    repo_id, cache = str(spec), _cache_dir()
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise WeightsUnavailableError(
            f"{repo_id}: not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set"
        )

    ok, reason = hub_model_available(repo_id)
    if not ok:
        raise WeightsUnavailableError(f"{repo_id}: not in the Hugging Face cache ({cache}) and {reason}")
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=allow_patterns))
    except Exception as e:  # network and repository errors all mean "cannot get these weights now"
        raise WeightsUnavailableError(f"{repo_id}: download failed ({type(e).__name__}: {e})") from None
