"""Pyramid pooling keeps nn.AdaptiveAvgPool2d's semantics at every size, also after ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.model.encoder import PyramidPoolingModule
from pipeline.model.pooling import AdaptiveAvgPool

# (feature h, feature w): the res5 maps of 640x640, 384x640, 640x864 inputs and odd sizes.
SIZES = [(20, 20), (12, 20), (20, 27), (7, 5), (1, 1), (6, 6)]


@pytest.mark.parametrize("bins", [1, 2, 3, 6])
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_matrix_pooling_equals_adaptive_pooling(h, w, bins):
    x = torch.randn(2, 8, h, w)
    torch.testing.assert_close(AdaptiveAvgPool(bins)(x), F.adaptive_avg_pool2d(x, bins), atol=1e-6, rtol=1e-5)


def test_the_official_fixed_kernel_export_would_be_wrong_at_640():
    """At 20x20 the fixed-kernel replacement (kernel = stride = 20 // bins) pools different bins."""
    x = torch.randn(1, 4, 20, 20)
    fixed = F.avg_pool2d(x, kernel_size=20 // 3, stride=20 // 3)[..., :3, :3]
    assert (fixed - F.adaptive_avg_pool2d(x, 3)).abs().max() > 1e-2


@pytest.mark.parametrize(("h", "w"), [(20, 20), (12, 20)])
def test_exported_ppm_matches_adaptive_reference_in_onnxruntime(tmp_path, h, w):
    import onnxruntime as ort

    torch.manual_seed(0)
    ppm = PyramidPoolingModule(16, 4).eval()
    x = torch.randn(2, 16, h, w)

    def reference(inp: torch.Tensor) -> torch.Tensor:  # the official module, with nn.AdaptiveAvgPool2d
        priors = [
            F.interpolate(F.relu(stage[1](F.adaptive_avg_pool2d(inp, stage[0].size))), size=(h, w),
                          mode="bilinear", align_corners=False)
            for stage in ppm.stages
        ]  # fmt: skip
        return F.relu(ppm.bottleneck(torch.cat([*priors, inp], 1)))

    path = tmp_path / "ppm.onnx"
    torch.onnx.export(ppm, (x[:1],), str(path), input_names=["x"], dynamic_axes={"x": {0: "b"}}, dynamo=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, reference(x).numpy(), atol=1e-5)
