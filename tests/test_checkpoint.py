"""Official checkpoints load strictly: every key used, none missing, none unexpected, or a clear error."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.errors import CheckpointError
from pipeline.model import build_model, load_model, load_official_checkpoint, save_checkpoint
from tests.conftest import FIXTURES


@pytest.mark.parametrize("arch", ["r50_giam", "r50_base"])
def test_model_state_dict_is_exactly_the_official_manifest(arch):
    manifest = json.loads((FIXTURES / f"manifest_{arch}.json").read_text())
    sd = build_model(arch).state_dict()
    assert [k["name"] for k in manifest["keys"]] == list(sd)
    assert all(list(sd[k["name"]].shape) == k["shape"] for k in manifest["keys"])


def test_softmax_giam_adds_only_its_softmax_bias():
    giam = set(build_model("r50_giam").state_dict())
    soft = set(build_model("r50_giam_soft").state_dict())
    assert soft - giam == {"decoder.inst_branch.softmax_bias"}
    assert giam - soft == set()


@pytest.fixture(scope="module")
def tiny_sd():
    return build_model("r18_giam_tiny").state_dict()


@pytest.mark.parametrize("wrap", [True, False], ids=["detectron2-layout", "bare-state-dict"])
def test_both_official_layouts_load(tmp_path, tiny_sd, wrap):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": tiny_sd} if wrap else tiny_sd, path)
    model = load_official_checkpoint(build_model("r18_giam_tiny"), path)
    assert torch.equal(model.state_dict()["backbone.stem.conv1.weight"], tiny_sd["backbone.stem.conv1.weight"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("encoder.fusion.weight"), "missing (1): encoder.fusion.weight"),
        (lambda sd: sd.__setitem__("decoder.extra.weight", torch.zeros(1)), "unexpected (1): decoder.extra.weight"),
        (lambda sd: sd.__setitem__("encoder.fusion.bias", torch.zeros(3)), "wrong shape (1): encoder.fusion.bias"),
    ],
    ids=["missing", "unexpected", "wrong-shape"],
)
def test_mismatched_checkpoint_names_the_offending_keys(tmp_path, tiny_sd, edit, message):
    sd = dict(tiny_sd)
    edit(sd)
    path = tmp_path / "bad.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_official_checkpoint(build_model("r18_giam_tiny"), path)


def test_unreadable_or_absent_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_official_checkpoint(build_model("r18_giam_tiny"), tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_official_checkpoint(build_model("r18_giam_tiny"), junk)


def test_project_checkpoint_round_trip_records_arch(tmp_path):
    model = build_model("r18_giam_tiny").eval()
    path = save_checkpoint(model, tmp_path / "m.pth", half=True)
    loaded = load_model(path)
    assert loaded.info.arch == "r18_giam_tiny"
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), atol=2e-3, rtol=1e-3, msg=k)
