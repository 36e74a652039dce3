"""Training: the official criterion behaves, the config is validated, runs checkpoint and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.model.checkpoint import load_model
from pipeline.model.losses import dice_loss, focal_loss, sparseinst_loss
from pipeline.model.matcher import match
from pipeline.model.train import load_train_config, synthetic_batch, train


def _perfect_outputs(masks: torch.Tensor, labels: torch.Tensor, queries: int, order: list[int]):
    """Predictions where query order[k] is exactly target k."""
    n, (h, w) = queries, masks.shape[-2:]
    logits = torch.full((1, n, 80), -8.0)
    mask_logits = torch.full((1, n, h, w), -8.0)
    for k, q in enumerate(order):
        logits[0, q, labels[k]] = 8.0
        mask_logits[0, q] = masks[k] * 16 - 8
    return {"pred_logits": logits, "pred_masks": mask_logits, "pred_scores": torch.zeros(1, n, 1)}


def _targets():
    masks = torch.zeros(3, 16, 16)
    masks[0, :5, :5] = 1
    masks[1, 8:, 8:] = 1
    masks[2, 2:12, 10:14] = 1
    return masks, torch.tensor([2, 0, 7])


def test_matcher_finds_the_queries_that_predict_each_target():
    masks, labels = _targets()
    out = _perfect_outputs(masks, labels, 10, order=[7, 2, 4])
    [(rows, cols)] = match(out["pred_logits"], out["pred_masks"], [labels], [masks])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 7, 1: 2, 2: 4}


def test_loss_is_lower_for_correct_predictions_than_for_swapped_ones():
    masks, labels = _targets()
    good = _perfect_outputs(masks, labels, 10, order=[0, 1, 2])
    bad = _perfect_outputs(masks, labels[[1, 2, 0]], 10, order=[0, 1, 2])  # right masks, wrong classes
    # targets are at the prediction resolution; padded size = 4x (stride 4)
    lg = sparseinst_loss(good, [labels], [masks.repeat_interleave(4, 1).repeat_interleave(4, 2)], (64, 64))
    lb = sparseinst_loss(bad, [labels], [masks.repeat_interleave(4, 1).repeat_interleave(4, 2)], (64, 64))
    assert lg["loss_cls"] < lb["loss_cls"] and lg["loss_dice"] < 0.05
    assert focal_loss(torch.tensor([8.0]), torch.tensor([1.0])) < focal_loss(torch.tensor([-8.0]), torch.tensor([1.0]))
    assert dice_loss(torch.tensor([[8.0, -8.0]]), torch.tensor([[1.0, 0.0]])) < 1e-3


def test_images_without_objects_train_too():
    out = _perfect_outputs(torch.zeros(0, 16, 16), torch.zeros(0, dtype=torch.int64), 6, order=[])
    out = {k: v.requires_grad_() for k, v in out.items()}
    losses = sparseinst_loss(out, [torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, 64, 64)], (64, 64))
    sum(losses.values()).backward()
    assert torch.isfinite(sum(losses.values()))


def test_invalid_config_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("arch: r18_giam_tiny\nbatch_size: 0\n")
    with pytest.raises(ConfigError, match="batch_size"):
        load_train_config(path)
    path.write_text("arch: r99\n")
    with pytest.raises(ConfigError, match="arch"):
        load_train_config(path)
    path.write_text("arch: r18_giam_tiny\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_train_config(path)


@pytest.mark.slow
def test_a_short_run_checkpoints_resumes_and_writes_a_loadable_model(tmp_path):
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(
        f"arch: r18_giam_tiny\nout_dir: {tmp_path / 'run'}\nsteps: 2\nbatch_size: 2\nimage_width: 320\n"
        "image_height: 192\nmin_size: 192\nmax_size: 320\ncheckpoint_every: 1\nwarmup_steps: 1\n"
    )
    final = train(load_train_config(cfg_path))
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=False)["step"] == 2
    first = load_model(final).state_dict()["decoder.inst_branch.cls_score.weight"].clone()
    # asking for more steps resumes from last.pth at step 2 instead of starting over
    final = train(load_train_config(cfg_path, steps=3))
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=False)["step"] == 3
    assert not torch.equal(first, load_model(final).state_dict()["decoder.inst_branch.cls_score.weight"])


def test_mixed_scenes_draw_from_both_scene_kinds_reproducibly(tmp_path):
    def batch(scenes: str) -> torch.Tensor:
        path = tmp_path / f"{scenes}.yaml"
        path.write_text(f"scenes: {scenes}\nbatch_size: 6\nhflip: false\nimage_width: 320\nimage_height: 192\n")
        cfg = load_train_config(path)
        return synthetic_batch(cfg, 3, np.random.default_rng(0))[0]

    standard, varied, mixed = batch("standard"), batch("varied"), batch("mixed")
    torch.testing.assert_close(mixed, batch("mixed"))
    from_standard = [any(torch.equal(m, s) for s in standard) for m in mixed]
    from_varied = [any(torch.equal(m, v) for v in varied) for m in mixed]
    assert all(a or b for a, b in zip(from_standard, from_varied, strict=True))
    assert any(from_standard) and any(from_varied)
