"""The small models shipped with the package, and loading a predictor for any checkpoint."""

from __future__ import annotations

from pathlib import Path

from pipeline.architectures import DEFAULT_MODEL, SHIPPED_MODELS, SHIPPED_WEIGHTS, resolve_weights
from pipeline.model.checkpoint import checkpoint_meta, load_model
from pipeline.model.predictor import Predictor

__all__ = ["DEFAULT_MODEL", "SHIPPED_MODELS", "SHIPPED_WEIGHTS", "load_predictor", "resolve_weights"]


def load_predictor(weights: str | Path | None = None, arch: str | None = None, **kwargs: object) -> Predictor:
    """A :class:`Predictor` for ``weights`` (default: the shipped model) at the input size it was trained for."""
    path = resolve_weights(weights)
    model = load_model(path, arch)
    size = checkpoint_meta(path).get("input_size") or {}
    kwargs.setdefault("min_size", int(size.get("min_size", 640)))
    kwargs.setdefault("max_size", int(size.get("max_size", 853)))
    return Predictor(model, **kwargs)  # type: ignore[arg-type]
