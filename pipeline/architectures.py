"""Names of the model variants (``pipeline.model.build`` builds them) and the shipped checkpoints: known
without importing PyTorch."""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("mbv2_giam", "r18_giam_tiny", "r50_base", "r50_giam", "r50_giam_soft")

ASSETS = Path(__file__).resolve().parent / "assets"
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
