"""Every config.pbtxt, committed or rendered, parses as Triton's ModelConfig and matches the contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from pipeline.serving import contract
from pipeline.serving.repository import read_spec, render_configs, spec_for_checkpoint, write_repository

COMMITTED = Path(__file__).resolve().parents[1] / "model_repository"


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def tensors(entries) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(e.name, mc.DataType.Name(e.data_type).removeprefix("TYPE_"), tuple(e.dims)) for e in entries]


def expected(ts: tuple[contract.Tensor, ...]) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(t.name, t.dtype, t.dims) for t in ts]


@pytest.fixture(scope="module")
def spec() -> contract.ModelSpec:
    return spec_for_checkpoint()[0]


def check_repository(root: Path, spec: contract.ModelSpec, target: str) -> None:
    io = contract.models(spec)
    configs = {name: parse(root / name / "config.pbtxt") for name in io}
    for name, cfg in configs.items():
        assert cfg.name == name
        assert cfg.max_batch_size == contract.MAX_BATCH
        assert tensors(cfg.input) == expected(io[name].inputs), name
        assert tensors(cfg.output) == expected(io[name].outputs), name
        assert (root / name / "1").is_dir()
    backends = {name: cfg.backend or cfg.platform for name, cfg in configs.items()}
    assert backends == {
        "preprocess": "dali" if target == "gpu" else "python",
        "sparseinst": "tensorrt_plan" if target == "gpu" else "python",
        "postprocess": "python",
        "sparseinst_pipeline": "ensemble",
    }
    for name in ("preprocess", "sparseinst"):
        batching = configs[name].dynamic_batching
        assert (name == "preprocess" and target == "cpu") or list(batching.preferred_batch_size) == [4, 8]
    # Versions: the network loads every version folder; the ensemble pins the repository's first version.
    assert configs["sparseinst"].version_policy.HasField("all")
    pins = {step.model_name: step.model_version for step in configs[contract.ENSEMBLE].ensemble_scheduling.step}
    assert pins == {"preprocess": -1, "sparseinst": 1, "postprocess": -1}
    # The ensemble's wiring: every step input is an ensemble input or an earlier step's output,
    # and names exist on the models they are mapped to.
    available = {t.name for t in io[contract.ENSEMBLE].inputs}
    for step in configs[contract.ENSEMBLE].ensemble_scheduling.step:
        model = io[step.model_name]
        assert set(step.input_map) == {t.name for t in model.inputs}
        assert set(step.input_map.values()) <= available
        assert set(step.output_map) <= {t.name for t in model.outputs}
        available |= set(step.output_map.values())
    assert {t.name for t in io[contract.ENSEMBLE].outputs} <= available


def test_the_committed_gpu_repository_is_the_rendered_one(spec):
    assert read_spec(COMMITTED) == spec
    for name, text in render_configs(spec, "gpu").items():
        assert (COMMITTED / name / "config.pbtxt").read_text() == text, f"{name}: re-render with 'repo build'"
    check_repository(COMMITTED, spec, "gpu")
    assert (COMMITTED / "preprocess" / "1" / "preprocess.json").is_file()


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_rendered_profiles_parse_and_match_the_contract(tmp_path, spec, target):
    write_repository(tmp_path, spec, target)
    check_repository(tmp_path, spec, target)
    python_models = sorted(p.parent.parent.name for p in tmp_path.glob("*/1/model.py"))
    assert python_models == (["postprocess", "preprocess", "sparseinst"] if target == "cpu" else ["postprocess"])


def test_an_official_size_model_gets_its_own_input_and_output_dims():
    spec = contract.ModelSpec(name="r50_giam", input_height=640, input_width=864, min_size=640, max_size=853,
                              num_queries=100, num_classes=80, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))  # fmt: skip
    net = parse_text(render_configs(spec, "gpu")["sparseinst"])
    assert tensors(net.input) == [("images", "FP32", (3, 640, 864))]
    assert ("pred_masks", "FP32", (100, 160, 216)) in tensors(net.output)


def parse_text(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())
