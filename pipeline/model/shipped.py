"""The small models shipped with the package, and loading a predictor for any checkpoint."""

from __future__ import annotations

from pathlib import Path

from pipeline.model.checkpoint import checkpoint_meta, load_model
from pipeline.model.predictor import Predictor

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# Every shipped model stays loadable by its name (``--weights r18_giam_tiny``); the default serves unless told.
SHIPPED_MODELS = {name: ASSETS / f"{name}.pth" for name in ("r18_giam_tiny", "mbv2_giam")}
DEFAULT_MODEL = "r18_giam_tiny"
SHIPPED_WEIGHTS = SHIPPED_MODELS[DEFAULT_MODEL]


def resolve_weights(weights: str | Path | None) -> Path:
    """A checkpoint path: the default shipped model for None, a shipped model's file for its name."""
    if weights is None or str(weights) == "":
        return SHIPPED_WEIGHTS
    path = Path(weights)
    if not path.exists() and str(weights) in SHIPPED_MODELS:
        return SHIPPED_MODELS[str(weights)]
    return path


def load_predictor(weights: str | Path | None = None, arch: str | None = None, **kwargs: object) -> Predictor:
    """A :class:`Predictor` for ``weights`` (default: the shipped model) at the input size it was trained for."""
    path = resolve_weights(weights)
    model = load_model(path, arch)
    size = checkpoint_meta(path).get("input_size") or {}
    kwargs.setdefault("min_size", int(size.get("min_size", 640)))
    kwargs.setdefault("max_size", int(size.get("max_size", 853)))
    return Predictor(model, **kwargs)  # type: ignore[arg-type]
