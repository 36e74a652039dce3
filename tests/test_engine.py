"""TensorRT plans: built on GPU hosts; elsewhere a clear error instead of a crash."""

from __future__ import annotations

import importlib.util

import pytest

from pipeline.errors import ExportError, GPUUnavailableError
from pipeline.model.engine import build_engine
from pipeline.model.export import export_onnx
from pipeline.model.shipped import SHIPPED_WEIGHTS, load_predictor

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAS_TENSORRT, reason="this host has TensorRT")
def test_without_tensorrt_the_error_says_what_to_install(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"")
    with pytest.raises(GPUUnavailableError, match=r"sparseinst-pipeline\[gpu\]"):
        build_engine(onnx_path, tmp_path / "m.plan")


def test_missing_onnx_and_bad_batches_are_rejected_before_any_gpu_work(tmp_path):
    with pytest.raises(ExportError, match="export-onnx"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "m.plan")
    with pytest.raises(ValueError, match="min <= opt <= max"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "m.plan", min_batch=4, opt_batch=2)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT (the 'gpu' extra)")
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_engine_builds_with_dynamic_batch_profile(tmp_path, fp16):
    import tensorrt as trt

    model = load_predictor(SHIPPED_WEIGHTS).model
    onnx_path = export_onnx(model, tmp_path / "m.onnx", height=384, width=640).path
    cache = tmp_path / "timing.cache"
    report = build_engine(onnx_path, tmp_path / "m.plan", fp16=fp16, max_batch=32, timing_cache=cache)
    assert report.plan.stat().st_size > 0 and cache.stat().st_size > 0
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(report.plan.read_bytes())
    name = engine.get_tensor_name(0)
    lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
    assert (lo[0], opt[0], hi[0]) == (1, 8, 32) and tuple(hi[1:]) == (3, 384, 640)
    if fp16:
        assert report.fp32_layers > 0
