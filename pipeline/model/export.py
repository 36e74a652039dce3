"""ONNX export: a trace-friendly wrapper with a fixed spatial size, a dynamic batch and fused scores.

The graph takes an already normalised, padded batch ``images`` (B, 3, H, W) and returns
``pred_logits`` (B, N, C) class logits, ``pred_objectness`` (B, N, 1) objectness logits,
``pred_masks`` (B, N, H/4, W/4) mask logits and ``scores`` (B, N, C) =
sqrt(sigmoid(class) * sigmoid(objectness)). Thresholding, rescoring and resizing stay
outside the graph. Pyramid pooling keeps its adaptive semantics because the encoder pools
with :class:`pipeline.model.pooling.AdaptiveAvgPool` (two constant matrix products).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import ExportError
from pipeline.model.sparseinst import SparseInst

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ("pred_logits", "pred_objectness", "pred_masks", "scores")


class ExportWrapper(nn.Module):
    """Fixed-shape inference graph of a SparseInst model (no tracing-time patches)."""

    def __init__(self, model: SparseInst) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images)
        logits, objectness = out["pred_logits"], out["pred_scores"]
        scores = torch.sqrt(logits.sigmoid() * objectness.sigmoid())
        return logits, objectness, out["pred_masks"], scores


@dataclass
class ExportReport:
    path: Path
    height: int
    width: int
    max_abs_diff: dict[str, float]  # ONNX Runtime vs PyTorch on a random batch


def export_onnx(
    model: SparseInst,
    path: str | Path,
    *,
    height: int,
    width: int,
    opset: int = 17,
    verify_batch: int = 2,
) -> ExportReport:
    """Write the model as ONNX for one input size and check ONNX Runtime against PyTorch."""
    divisor = model.info.size_divisibility
    if height % divisor or width % divisor:
        raise ExportError(f"input size {height}x{width} must be a multiple of {divisor} (the model pads to it)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model).eval()
    dummy = torch.zeros(1, 3, height, width)
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}}
    # Fixed spatial sizes are the point of a profile: the tracer's "treated as a constant" warnings are expected.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    diffs = compare_with_onnxruntime(wrapper, path, batch=verify_batch, height=height, width=width)
    log.info("exported %s (%dx%d); ONNX Runtime vs PyTorch max |diff|: %s", path, height, width, diffs)
    return ExportReport(path=path, height=height, width=width, max_abs_diff=diffs)


def verification_batch(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Normalised synthetic street scenes at the profile size.

    Realistic inputs matter: on random noise a trained network's activations leave their usual
    range and float32 rounding differences between runtimes grow tenfold.
    """
    from pipeline.data.synthetic import synthetic_image
    from pipeline.model.predictor import normalize

    return np.stack([normalize(synthetic_image(seed, i, width, height).image) for i in range(batch)])


def compare_with_onnxruntime(
    wrapper: nn.Module, path: Path, *, batch: int, height: int, width: int, seed: int = 0
) -> dict[str, float]:
    import onnxruntime as ort

    x = torch.from_numpy(verification_batch(batch, height, width, seed))
    with torch.no_grad():
        expected = [t.numpy() for t in wrapper(x)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
    return {name: float(np.abs(e - g).max()) for name, e, g in zip(OUTPUT_NAMES, expected, got)}
