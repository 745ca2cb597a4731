"""Finding the user's weights and data for the paper track. Never downloads.

Every lookup either returns a local path or raises MissingAssetError saying what is missing, where we
looked and how to get it (e.g. `huggingface-cli download <repo>` on a machine with network, or the
config key / environment variable to point at a local copy).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import MissingAssetError


def hf_model(repo_or_path: str, what: str, subfolder: str | None = None) -> Path:
    """A local folder for a Hugging Face model: an existing path, or a snapshot in the local HF cache."""
    looked = []
    p = Path(repo_or_path).expanduser()
    if p.exists():
        return p
    looked.append(str(p))
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(repo_or_path, local_files_only=True))
        if subfolder is None or (local / subfolder).exists():
            return local
        looked.append(str(local / subfolder))
    except Exception:
        from huggingface_hub.constants import HF_HUB_CACHE

        looked.append(f"{HF_HUB_CACHE} (repo {repo_or_path})")
    raise MissingAssetError(
        what,
        f"download it where you have network (`huggingface-cli download {repo_or_path}`) so that it lands in "
        f"the local Hugging Face cache, or pass a local folder with --set model=hf:/path/to/model",
        looked,
    )


def local_path(value: str | None, what: str, how: str, env: str | None = None, must_exist: bool = True) -> Path:
    """A user-supplied file or folder from a config value or an environment variable."""
    looked = []
    candidates = [value] if value else []
    if env and os.environ.get(env):
        candidates.append(os.environ[env])
    for c in candidates:
        p = Path(c).expanduser()
        if p.exists() or not must_exist:
            return p
        looked.append(str(p))
    if not candidates:
        looked.append("(no path given" + (f"; set the config key or ${env})" if env else ")"))
    raise MissingAssetError(what, how, looked)
