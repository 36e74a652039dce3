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
        assert cfg.max_batch_size == (0 if name in contract.NON_BATCHING else contract.MAX_BATCH)
        assert tensors(cfg.input) == expected(io[name].inputs), name
        assert tensors(cfg.output) == expected(io[name].outputs), name
        assert (root / name / "1").is_dir()
    backends = {name: cfg.backend or cfg.platform for name, cfg in configs.items()}
    assert backends == {
        "preprocess": "dali" if target == "gpu" else "python",
        "sparseinst": "tensorrt_plan" if target == "gpu" else "python",
        "postprocess": "python",
        "sparseinst_pipeline": "ensemble",
        "preprocess_video": "python",  # both profiles: DALI (NVDEC on GPU) or FFmpeg inside, per segment
        "sparseinst_video": "ensemble",
    }
    assert configs["preprocess_video"].parameters["device"].string_value == target
    for name in ("preprocess", "sparseinst"):
        batching = configs[name].dynamic_batching
        assert (name == "preprocess" and target == "cpu") or list(batching.preferred_batch_size) == [4, 8]
    # Versions: the network loads every version folder; the ensemble pins the repository's first version.
    assert configs["sparseinst"].version_policy.HasField("all")
    for ensemble, first in ((contract.ENSEMBLE, "preprocess"), (contract.VIDEO_ENSEMBLE, "preprocess_video")):
        steps = configs[ensemble].ensemble_scheduling.step
        assert {step.model_name: step.model_version for step in steps} == {first: -1, "sparseinst": 1,
                                                                          "postprocess": -1}  # fmt: skip
        # The wiring: every step input is an ensemble input or an earlier step's output,
        # and names exist on the models they are mapped to.
        available = {t.name for t in io[ensemble].inputs}
        for step in steps:
            model = io[step.model_name]
            assert set(step.input_map) == {t.name for t in model.inputs}
            assert set(step.input_map.values()) <= available
            assert set(step.output_map) <= {t.name for t in model.outputs}
            available |= set(step.output_map.values())
        assert {t.name for t in io[ensemble].outputs} <= available


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
    expected = ["postprocess", "preprocess", "preprocess_video", "sparseinst"] if target == "cpu" else [
        "postprocess", "preprocess_video"]  # fmt: skip
    assert python_models == expected


def test_an_official_size_model_gets_its_own_input_and_output_dims():
    spec = contract.ModelSpec(name="r50_giam", input_height=640, input_width=864, min_size=640, max_size=853,
                              num_queries=100, num_classes=80, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))  # fmt: skip
    net = parse_text(render_configs(spec, "gpu")["sparseinst"])
    assert tensors(net.input) == [("images", "FP32", (3, 640, 864))]
    assert ("kept_masks", "FP32", (-1, 160, 216)) in tensors(net.output)  # only the kept queries leave it


def parse_text(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


# ------------------------------------------------------------------ against what the real components read


ONNX_TYPES = {"tensor(float)": "FP32", "tensor(int32)": "INT32", "tensor(int64)": "INT64", "tensor(uint8)": "UINT8"}


def test_the_network_config_is_what_the_exported_onnx_graph_takes_and_gives(cpu_repository):
    """ONNX Runtime's reading of the exported graph, and what it returns for a batch of two, against the config."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(cpu_repository / contract.NETWORK / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    net = parse(cpu_repository / contract.NETWORK / "config.pbtxt")
    (image,) = session.get_inputs()
    assert [(image.name, ONNX_TYPES[image.type], tuple(image.shape[1:]))] == tensors(net.input)
    assert isinstance(image.shape[0], str)  # a dynamic batch axis, as max_batch_size needs
    outputs = session.run(None, {image.name: np.zeros((2, *image.shape[1:]), np.float32)})
    got = sorted((o.name, ONNX_TYPES[o.type], tuple(v.shape[1:])) for o, v in zip(session.get_outputs(), outputs))
    expected = sorted(tensors(net.output))
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for (name, _, shape), (_, _, dims) in zip(got, expected):  # -1: the kept queries, as many as the batch needs
        assert len(shape) == len(dims) and all(d in (-1, n) for d, n in zip(dims, shape)), (name, shape, dims)
    assert all(v.shape[0] == 2 for v in outputs)


@pytest.mark.slow
def test_triton_serves_every_model_with_the_inputs_and_outputs_the_ensemble_wires(triton, cpu_repository):
    """Triton's own metadata of the loaded models: every ensemble step's tensors exist with their types."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton.http_url)
    try:
        meta = {name: client.get_model_metadata(name) for name in contract.models(read_spec(cpu_repository))}
        ensemble = client.get_model_config(contract.ENSEMBLE)
    finally:
        client.close()

    def served(entries) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {e["name"]: (e["datatype"], tuple(e["shape"][1:])) for e in entries}  # batch axis first (-1)

    for step in ensemble["ensemble_scheduling"]["step"]:
        model = meta[step["model_name"]]
        assert set(step["input_map"]) == set(served(model["inputs"])), step["model_name"]
        assert set(step["output_map"]) <= set(served(model["outputs"])), step["model_name"]
    # a tensor passed from one step to the next has the same type and shape on both sides
    produced = {}
    for step in ensemble["ensemble_scheduling"]["step"]:
        outs = served(meta[step["model_name"]]["outputs"])
        produced |= {wire: outs[name] for name, wire in step["output_map"].items()}
    for step in ensemble["ensemble_scheduling"]["step"]:
        ins = served(meta[step["model_name"]]["inputs"])
        for name, wire in step["input_map"].items():
            if wire in produced:
                assert produced[wire] == ins[name], (step["model_name"], name)
    assert served(meta[contract.ENSEMBLE]["outputs"]) == {
        w: produced[w] for w in served(meta[contract.ENSEMBLE]["outputs"])
    }
