"""The shipped small model: small enough to ship, documented, and accurate on unseen synthetic scenes."""

from __future__ import annotations

import json

import pytest

from pipeline.data.coco import synthetic_coco
from pipeline.data.evaluate import evaluate_masks
from pipeline.model.checkpoint import checkpoint_meta
from pipeline.model.shipped import DEFAULT_MODEL, SHIPPED_MODELS, SHIPPED_WEIGHTS, load_predictor, resolve_weights


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_checkpoints_are_small_and_record_how_they_were_made(name):
    path = SHIPPED_MODELS[name]
    assert path.stat().st_size <= 15 * 1024 * 1024
    meta = checkpoint_meta(path)
    assert meta["arch"] == name
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert "model train --config" in provenance["command"]
    train_seeds = {stage["data_seed"] for stage in provenance["stages"]}
    assert meta["train_config"]["data_seed"] == provenance["stages"][-1]["data_seed"]
    # the README's evaluation seed, this file's held-out seed (777) and the demo's seeds never served as training data
    assert not train_seeds & {provenance["eval"]["synthetic_seed"], 777, 5, 6, 7, 8, 9}
    assert provenance["real_frames"]["annotations"] == "tests/fixtures/real_street_boxes.json"


def test_the_default_and_every_shipped_model_load_by_name():
    assert SHIPPED_MODELS[DEFAULT_MODEL] == SHIPPED_WEIGHTS
    for name in SHIPPED_MODELS:
        assert load_predictor(name).model.info.arch == name
    assert resolve_weights(None) == SHIPPED_WEIGHTS


@pytest.mark.slow
def test_shipped_model_segments_unseen_synthetic_scenes():
    """A held-out seed never used in training; the floor sits well below the README's figures."""
    predictor = load_predictor()
    gt, pixels = synthetic_coco(seed=777, num_images=40)

    def predict(image):
        inst = predictor(image)
        return inst.scores, inst.classes, inst.masks

    result = evaluate_masks(gt, zip(gt["images"], pixels), predict)
    assert result.ap50 >= 0.5, result.summary_line()
    assert result.per_class["car"] >= 0.4, result.per_class
