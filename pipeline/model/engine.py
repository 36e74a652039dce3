"""TensorRT engine building from the exported ONNX file (GPU hosts only).

The plan gets one optimisation profile with a dynamic batch (``min..max``, tuned at ``opt``)
and the fixed spatial size of the ONNX file. In FP16 builds the instance-activation
normalisation (sigmoid, spatial sum, divide) is pinned to FP32: its sum over every pixel can
overflow FP16, the failure the official softmax variant was made for.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ExportError, GPUUnavailableError

log = logging.getLogger(__name__)

# ONNX node names (from the exporter's module scopes) whose layers stay in FP32 in FP16 builds.
# The kept-instance selection (``select/``, appended by pipeline.serving.selection) compares scores with the
# threshold exactly as post-processing does, in FP32.
FP32_LAYERS = re.compile(r"inst_branch/(Sigmoid|Reduce\w*|Div|Clip|Softmax|Add|MatMul|Transpose)|^select/")


@dataclass
class EngineReport:
    plan: Path
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    input_shape: tuple[int, ...]
    fp32_layers: int
    timing_cache: Path | None


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise GPUUnavailableError(
            "TensorRT is not installed; build engines on a CUDA host with `pip install 'sparseinst-pipeline[gpu]'`"
        ) from exc
    return trt


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    *,
    fp16: bool = True,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_gib: float = 4.0,
    timing_cache: str | Path | None = None,
) -> EngineReport:
    """Build and serialise a TensorRT plan; raises :class:`GPUUnavailableError` without CUDA/TensorRT."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"batch sizes must satisfy 1 <= min <= opt <= max, got {min_batch}, {opt_batch}, {max_batch}")
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file not found: {onnx_path} (run `sparseinst-pipeline model export-onnx` first)")
    trt = _import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except Exception as exc:  # TensorRT raises plain errors/TypeError when no CUDA device is usable
        raise GPUUnavailableError(f"TensorRT cannot use a CUDA GPU on this host: {exc}") from exc
    if builder is None:
        raise GPUUnavailableError("TensorRT found no usable CUDA GPU on this host")
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), path=str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    pinned = 0
    if fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; the FP16 plan may be slower than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if FP32_LAYERS.search(layer.name):
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
                pinned += 1

    image = network.get_input(0)
    _, c, h, w = image.shape
    if h < 0 or w < 0:
        raise ExportError(f"{onnx_path} has a dynamic spatial size; export one file per input size")
    profile = builder.create_optimization_profile()
    profile.set_shape(image.name, (min_batch, c, h, w), (opt_batch, c, h, w), (max_batch, c, h, w))
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    log.info("building %s plan for %s (batch %d..%d, opt %d)", "FP16" if fp16 else "FP32", onnx_path,
             min_batch, max_batch, opt_batch)  # fmt: skip
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path}; see the TensorRT log above")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    if cache_path:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return EngineReport(
        plan=plan_path,
        precision="fp16" if fp16 else "fp32",
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        input_shape=(c, h, w),
        fp32_layers=pinned,
        timing_cache=cache_path,
    )
