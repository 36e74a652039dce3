"""Render the Triton model repository for a target profile from one description.

Both profiles have the same six models with the same tensors (``pipeline.serving.contract``):

================  ===========================================  ===========================================
model             gpu (production, NGC Triton image)           cpu (local, the ``nvidia-pytriton`` server)
================  ===========================================  ===========================================
preprocess        DALI backend, ``model.dali`` (nvJPEG)        Python backend running the same DALI
                                                               pipeline on DALI's CPU operators
preprocess_video  Python backend: DALI ``mixed`` video         Python backend: DALI's CPU video decoder
                  decoder (NVDEC), then the same resize        (VP8/VP9/MJPEG) or FFmpeg (H.264/H.265),
                                                               then the same DALI resize
sparseinst        ``tensorrt_plan``, ``model.plan``            Python backend, ONNX Runtime, ``model.onnx``
postprocess       Python backend (numpy)                       the same
ensembles         ``sparseinst_pipeline`` (JPEG batches),      the same
                  ``sparseinst_video`` (one segment)
================  ===========================================  ===========================================

Versions: ``sparseinst`` loads every version folder it has (``version_policy: all``), and each
ensemble pins the network version it runs: ``sparseinst_pipeline`` pins the version the
repository was built with (1), a candidate added later gets its own ensemble
``sparseinst_pipeline_v<N>`` (``pipeline.serving.versions``). Pinned ensembles keep a camera's
detections truthful about the version that made them and let live and candidate serve side by
side; Triton shares one ``config.pbtxt`` across a model's versions, so a candidate must have the
same tensors as the live version.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import PipelineError
from pipeline.serving import contract
from pipeline.serving.contract import ModelSpec, Tensor

log = logging.getLogger(__name__)

Target = Literal["cpu", "gpu"]
FIRST_VERSION = 1  # the network version a repository is built with; candidates get the next numbers
VERSION_POLICY = "version_policy: { all { } }\n"  # live and candidate side by side (pinned by ensembles)
SPEC_FILE = "model_spec.json"  # kept at the repository root: what was rendered, for clients and tools


class RepositoryOptions(BaseModel):
    """What an operator may tune when rendering a repository."""

    model_config = ConfigDict(extra="forbid")

    score_threshold: float = Field(0.3, ge=0.0, lt=1.0, description="instances scoring at or below are dropped")
    mask_threshold: float = Field(0.45, gt=0.0, lt=1.0)
    max_batch: int = Field(contract.MAX_BATCH, ge=1, le=256)
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = Field(2000, ge=0, description="how long the batcher waits to fill a batch")
    network_instances: int = Field(1, ge=1)
    postprocess_instances: int = Field(2, ge=1)
    cpu_threads: int = Field(2, ge=0, description="threads per CPU model instance (DALI, ONNX Runtime); 0 = all")


def _tensor_block(kind: str, tensors: tuple[Tensor, ...]) -> str:
    items = ",\n".join(
        f'  {{\n    name: "{t.name}"\n    data_type: TYPE_{t.dtype}\n    dims: [ {", ".join(map(str, t.dims))} ]\n  }}'
        for t in tensors
    )
    return f"{kind} [\n{items}\n]\n"


def _parameters(params: dict[str, object]) -> str:
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in params.items())


def _batching(options: RepositoryOptions) -> str:
    sizes = ", ".join(str(s) for s in options.preferred_batch_sizes if s <= options.max_batch)
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
            f"  max_queue_delay_microseconds: {options.max_queue_delay_us}\n}}\n")  # fmt: skip


def _instances(kind: str, count: int) -> str:
    return f"instance_group [ {{ kind: {kind} count: {count} }} ]\n"


def _floats(values: tuple[float, ...]) -> str:
    return ",".join(repr(float(v)) for v in values)


def _resize_parameters(spec: ModelSpec) -> dict[str, object]:
    """What the Python-backend preprocessing models pass to ``dali.preprocess.fit_to_input``."""
    return {**preprocess_params(spec), "pixel_mean": _floats(spec.pixel_mean), "pixel_std": _floats(spec.pixel_std)}


def render_ensemble(spec: ModelSpec, name: str, network_version: int, *, video: bool = False) -> str:
    """The ensemble ``name``: preprocess -> ``sparseinst`` version ``network_version`` -> postprocess.

    ``video``: the segment ensemble (no batching: one segment per request, its frames the network's batch).
    """
    steps = []
    for model, inputs, outputs in contract.ensemble_steps(spec, video):
        version = network_version if model == contract.NETWORK else -1
        maps = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in inputs.items())
        maps += "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in outputs.items())
        steps.append(f'    {{\n      model_name: "{model}"\n      model_version: {version}\n{maps}    }}')
    io = contract.models(spec)[contract.VIDEO_ENSEMBLE if video else contract.ENSEMBLE]
    ens = f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {0 if video else contract.MAX_BATCH}\n'
    ens += _tensor_block("input", io.inputs) + _tensor_block("output", io.outputs)
    return ens + "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n"


def render_configs(spec: ModelSpec, target: Target, options: RepositoryOptions | None = None) -> dict[str, str]:
    """``{model name: config.pbtxt text}`` for the target profile."""
    options = options or RepositoryOptions()
    io = contract.models(spec)
    head = lambda name: f'name: "{name}"\n'  # noqa: E731
    batch = f"max_batch_size: {options.max_batch}\n"
    body = lambda name: _tensor_block("input", io[name].inputs) + _tensor_block("output", io[name].outputs)  # noqa: E731

    if target == "gpu":
        pre = head(contract.PREPROCESS) + 'backend: "dali"\n' + batch + body(contract.PREPROCESS)
        pre += _batching(options) + _instances("KIND_GPU", 1)
        net = head(contract.NETWORK) + 'platform: "tensorrt_plan"\n' + batch + body(contract.NETWORK)
        net += _batching(options) + _instances("KIND_GPU", options.network_instances) + VERSION_POLICY
    elif target == "cpu":
        pre = head(contract.PREPROCESS) + 'backend: "python"\n' + batch + body(contract.PREPROCESS)
        pre += _instances("KIND_CPU", 1) + _parameters({
            **_resize_parameters(spec), "max_batch": options.max_batch, "threads": options.cpu_threads,
        })  # fmt: skip
        net = head(contract.NETWORK) + 'backend: "python"\n' + batch + body(contract.NETWORK)
        net += _batching(options) + _instances("KIND_CPU", options.network_instances) + VERSION_POLICY
        net += _parameters({"onnx_file": "model.onnx", "threads": options.cpu_threads})
    else:
        raise PipelineError(f"unknown target {target!r}; expected 'cpu' or 'gpu'")

    # The video step is a Python-backend model in both profiles: it picks the decoder per segment
    # (NVDEC through DALI on GPU hosts; DALI's CPU decoder or FFmpeg on CPU) and turns the frames into
    # the network's batch, which a batching DALI-backend model cannot (one segment in, F frames out).
    vid = head(contract.PREPROCESS_VIDEO) + 'backend: "python"\nmax_batch_size: 0\n' + body(contract.PREPROCESS_VIDEO)
    vid += _instances("KIND_GPU" if target == "gpu" else "KIND_CPU", 1) + _parameters({
        "device": target, **_resize_parameters(spec), "max_frames": min(options.max_batch, contract.MAX_BATCH),
        "threads": options.cpu_threads,
    })  # fmt: skip

    post = head(contract.POSTPROCESS) + 'backend: "python"\n' + batch + body(contract.POSTPROCESS)
    post += _instances("KIND_CPU", options.postprocess_instances) + _parameters({
        "score_threshold": options.score_threshold, "mask_threshold": options.mask_threshold,
        "mask_stride": spec.mask_stride,
    })  # fmt: skip

    ens = render_ensemble(spec, contract.ENSEMBLE, FIRST_VERSION)
    video = render_ensemble(spec, contract.VIDEO_ENSEMBLE, FIRST_VERSION, video=True)
    return {contract.PREPROCESS: pre, contract.PREPROCESS_VIDEO: vid, contract.NETWORK: net,
            contract.POSTPROCESS: post, contract.ENSEMBLE: ens, contract.VIDEO_ENSEMBLE: video}  # fmt: skip


# The Python-backend models of a repository are one-line re-exports of the package's implementations,
# so a repository never holds a second copy of the code.
PYTHON_MODELS: dict[Target, dict[str, str]] = {
    "cpu": {
        contract.PREPROCESS: "pipeline.serving.backends.preprocess",
        contract.PREPROCESS_VIDEO: "pipeline.serving.backends.preprocess_video",
        contract.NETWORK: "pipeline.serving.backends.network",
        contract.POSTPROCESS: "pipeline.serving.backends.postprocess",
    },
    "gpu": {
        contract.PREPROCESS_VIDEO: "pipeline.serving.backends.preprocess_video",
        contract.POSTPROCESS: "pipeline.serving.backends.postprocess",
    },
}


def preprocess_params(spec: ModelSpec) -> dict[str, object]:
    """The keyword arguments of ``dali.preprocess.preprocess_graph`` for this model."""
    keys = ("min_size", "max_size", "input_height", "input_width", "pixel_mean", "pixel_std")
    return {k: getattr(spec, k) for k in keys}


def write_repository(out: Path, spec: ModelSpec, target: Target, options: RepositoryOptions | None = None) -> Path:
    """Write configs, version folders, ``model.py`` files and the spec; model binaries are added separately."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_configs(spec, target, options).items():
        version = out / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (out / name / "config.pbtxt").write_text(text)
        module = PYTHON_MODELS[target].get(name)
        if module:
            header = f'"""Triton Python-backend model: see {module}."""\n\n'
            (version / "model.py").write_text(f"{header}from {module} import TritonPythonModel  # noqa: F401\n")
    if target == "gpu":
        params = {**preprocess_params(spec), "max_batch": (options or RepositoryOptions()).max_batch}
        (out / contract.PREPROCESS / "1" / "preprocess.json").write_text(json.dumps(params, indent=2) + "\n")
    (out / SPEC_FILE).write_text(spec.model_dump_json(indent=2) + "\n")
    return out


def score_threshold_of(repository: Path) -> float:
    """The score threshold a repository was rendered with (its post-processing's, which the network's
    kept-instance selection must match)."""
    import re

    text = (Path(repository) / contract.POSTPROCESS / "config.pbtxt").read_text()
    found = re.search(r'key: "score_threshold" value: \{ string_value: "([^"]+)" \}', text)
    if found is None:
        raise PipelineError(f"{repository}: the postprocess config names no score_threshold")
    return float(found.group(1))


def read_spec(repository: Path) -> ModelSpec:
    path = Path(repository) / SPEC_FILE
    if not path.is_file():
        raise PipelineError(f"{path} not found: render the repository with 'sparseinst-pipeline repo build'")
    return ModelSpec.model_validate_json(path.read_text())


def spec_for_checkpoint(weights: Path | None = None, arch: str | None = None) -> tuple[ModelSpec, object]:
    """The serving spec of a checkpoint (default: the shipped model) and the loaded network."""
    from pipeline.model.checkpoint import checkpoint_meta, load_model
    from pipeline.model.shipped import resolve_weights

    path = resolve_weights(weights)
    model = load_model(path, arch)
    size = checkpoint_meta(path).get("input_size") or {}
    min_size, max_size = int(size.get("min_size", 640)), int(size.get("max_size", 853))
    # The fixed input holds a landscape frame at the official size: short side min_size, long side <= max_size.
    up = lambda v: -(-v // model.info.size_divisibility) * model.info.size_divisibility  # noqa: E731
    spec = ModelSpec(
        name=model.info.arch, min_size=min_size, max_size=max_size,
        input_height=up(min_size), input_width=up(max_size),
        num_queries=model.info.num_queries, num_classes=model.info.num_classes,
        pixel_mean=model.info.pixel_mean, pixel_std=model.info.pixel_std,
    )  # fmt: skip
    return spec, model


def build_repository(
    out: Path,
    target: Target,
    *,
    weights: Path | None = None,
    arch: str | None = None,
    options: RepositoryOptions | None = None,
) -> Path:
    """A complete repository for ``target`` from a checkpoint (default: the shipped small model).

    CPU: configs plus ``sparseinst/1/model.onnx``; ready to serve. GPU: configs, the ONNX file the
    engine is built from, and ``preprocess.json``; ``model.plan`` and ``model.dali`` are built on the
    GPU host (``model build-engine`` and ``python -m dali.serialize``), here too when CUDA is present.
    """
    import tempfile

    from pipeline.model.export import export_onnx
    from pipeline.serving.selection import write_served_network

    options = options or RepositoryOptions()
    spec, model = spec_for_checkpoint(weights, arch)
    if out.exists():
        for name in render_configs(spec, target, options):
            shutil.rmtree(out / name, ignore_errors=True)
    write_repository(out, spec, target, options)
    onnx_path = out / contract.NETWORK / "1" / "model.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "exported.onnx"
        report = export_onnx(model, exported, height=spec.input_height, width=spec.input_width)  # type: ignore[arg-type]
        write_served_network(exported, onnx_path, options.score_threshold)
    log.info("ONNX %s verified against PyTorch: %s; served with the kept-instance selection", onnx_path,
             report.max_abs_diff)  # fmt: skip
    if target == "gpu":
        log.info("GPU profile: build %s/sparseinst/1/model.plan with 'sparseinst-pipeline model build-engine' and "
                 "%s/preprocess/1/model.dali with 'python -m dali.serialize' on the GPU host", out, out)  # fmt: skip
    return out
