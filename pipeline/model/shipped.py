"""The small model shipped with the package, and loading a predictor for any checkpoint."""

from __future__ import annotations

from pathlib import Path

from pipeline.model.checkpoint import checkpoint_meta, load_model
from pipeline.model.predictor import Predictor

SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "r18_giam_tiny.pth"


def load_predictor(weights: str | Path | None = None, arch: str | None = None, **kwargs: object) -> Predictor:
    """A :class:`Predictor` for ``weights`` (default: the shipped model) at the input size it was trained for."""
    path = Path(weights) if weights else SHIPPED_WEIGHTS
    model = load_model(path, arch)
    size = checkpoint_meta(path).get("input_size") or {}
    kwargs.setdefault("min_size", int(size.get("min_size", 640)))
    kwargs.setdefault("max_size", int(size.get("max_size", 853)))
    return Predictor(model, **kwargs)  # type: ignore[arg-type]
