"""Checkpoint I/O: strict loading of official (detectron2-layout) files and the project's own files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import CheckpointError
from pipeline.model.build import build_model
from pipeline.model.sparseinst import SparseInst

FORMAT = "sparseinst-pipeline/1"


def _read(path: str | Path) -> Mapping[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for unreadable files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def extract_state_dict(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint saved as ``{"model": sd}`` or as a bare state dict."""
    sd = obj.get("model", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError("checkpoint holds no state dict: expected {'model': state_dict} or a bare state_dict")
    return dict(sd)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Copy every tensor into ``model``; any missing, unexpected or misshapen key is an error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    misshapen = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or misshapen:
        lines = [f"checkpoint {source} does not fit the model"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
                lines.append(f"  {title} ({len(keys)}): {shown}")
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state_dict[k].to(v.dtype))


def load_official_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an official SparseInst checkpoint (``{"model": sd}`` or bare) strictly into ``model``."""
    load_state_dict_strict(model, extract_state_dict(_read(path)), source=str(path))
    return model


def save_checkpoint(model: SparseInst, path: str | Path, *, half: bool = False, **meta: Any) -> Path:
    """Save ``{"model": sd, "arch": ..., ...}``; ``half`` stores floats as FP16 to halve the file."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "arch": model.info.arch, "model": sd, **meta}, path)
    return path


def load_model(path: str | Path, arch: str | None = None) -> SparseInst:
    """Build the model a checkpoint names (or ``arch``), load it strictly, and put it in eval mode."""
    obj = _read(path)
    arch = arch or (obj.get("arch") if isinstance(obj, Mapping) else None)
    if not arch:
        raise CheckpointError(f"{path} does not say its architecture; pass arch= (for example 'r50_giam')")
    model = build_model(str(arch))
    load_state_dict_strict(model, extract_state_dict(obj), source=str(path))
    return model.eval()


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """Everything a checkpoint stores beside its weights."""
    obj = _read(path)
    return {k: v for k, v in obj.items() if k != "model"} if isinstance(obj, Mapping) else {}
