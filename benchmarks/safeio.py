"""Safe model/tensor I/O: safetensors and JSON by default; pickles only with an explicit opt-in.

`torch.load` is always called with `weights_only=True` unless the caller passes `allow_pickle=True`
or the user sets EFFBENCH_ALLOW_PICKLE=1 (needed for whole pruned models saved with torch.save).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .errors import EffbenchError


class UnsafeFileError(EffbenchError):
    exit_code = 2


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=meta)


def load_tensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=device)
    return torch_load(path, map_location=device)


def pickle_allowed() -> bool:
    return os.environ.get("EFFBENCH_ALLOW_PICKLE", "") in {"1", "true", "yes"}


def torch_load(path: Path, map_location: str = "cpu", allow_pickle: bool = False) -> Any:
    """torch.load with weights_only=True; a file that needs arbitrary unpickling is refused with a clear
    message unless allow_pickle=True or EFFBENCH_ALLOW_PICKLE=1."""
    path = Path(path)
    if allow_pickle or pickle_allowed():
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError (or RuntimeError) for non-weights pickles
        raise UnsafeFileError(
            f"refusing to unpickle {path}: it holds more than tensors ({type(e).__name__}). "
            "Only load files you trust; to allow it set EFFBENCH_ALLOW_PICKLE=1."
        ) from None


def save_module(module: torch.nn.Module, path: Path, config: dict | None = None) -> None:
    """state_dict -> safetensors, plus `config` (whatever rebuilds the architecture) in the metadata."""
    save_tensors(module.state_dict(), path, {"config": config or {}})


def read_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: json.loads(v) for k, v in meta.items()}
