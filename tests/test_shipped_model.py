"""The shipped small model: small enough to ship, documented, and accurate on unseen synthetic scenes."""

from __future__ import annotations

import json

import pytest

from pipeline.data.coco import synthetic_coco
from pipeline.data.evaluate import evaluate_masks
from pipeline.model.checkpoint import checkpoint_meta
from pipeline.model.shipped import SHIPPED_WEIGHTS, load_predictor


def test_shipped_checkpoint_is_small_and_records_how_it_was_made():
    assert SHIPPED_WEIGHTS.stat().st_size <= 15 * 1024 * 1024
    meta = checkpoint_meta(SHIPPED_WEIGHTS)
    assert meta["arch"] == "r18_giam_tiny"
    provenance = json.loads(SHIPPED_WEIGHTS.with_suffix(".json").read_text())
    assert "model train --config" in provenance["command"]
    train_seeds = {stage["data_seed"] for stage in provenance["stages"]}
    assert meta["train_config"]["data_seed"] == provenance["stages"][-1]["data_seed"]
    # the README's evaluation seed and this file's held-out seed (777) never served as training data
    assert provenance["eval"]["synthetic_seed"] not in train_seeds and 777 not in train_seeds


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
