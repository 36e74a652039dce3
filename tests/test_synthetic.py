"""The synthetic driving-scene simulator: seeded, exact masks, stable ids, COCO export."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.data.augment import augment, rescale
from pipeline.data.classes import CLASS_INDEX, COCO_IDS, SCENE_CLASSES
from pipeline.data.coco import decode_rle, synthetic_coco
from pipeline.data.evaluate import score_coco
from pipeline.data.shapes import draw_billboard, person_outfit
from pipeline.data.synthetic import (
    MIN_AREA,
    _occlude,
    synthetic_image,
    synthetic_sequence,
    training_image,
    vehicle_cameras,
)


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = synthetic_image(5, 3), synthetic_image(5, 3), synthetic_image(6, 3)
    np.testing.assert_array_equal(a.image, b.image)
    assert [i.object_id for i in a.instances] == [i.object_id for i in b.instances]
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("index", range(6))
def test_instance_masks_are_disjoint_visible_and_of_scene_classes(index):
    frame = synthetic_image(11, index)
    assert frame.image.shape == (360, 640, 3) and frame.image.dtype == np.uint8
    seen = np.zeros(frame.image.shape[:2], bool)
    for inst in frame.instances:
        assert inst.area >= MIN_AREA
        assert not (seen & inst.mask).any(), "occlusion must leave each pixel to one instance"
        seen |= inst.mask
    allowed = {CLASS_INDEX[c] for c in SCENE_CLASSES}
    assert {i.category for i in frame.instances} <= allowed


def test_a_set_covers_every_scene_class():
    seen = {inst.category for i in range(40) for inst in synthetic_image(3, i).instances}
    assert seen == {CLASS_INDEX[c] for c in SCENE_CLASSES}


def test_sequence_has_four_cameras_and_stable_moving_objects():
    frames = synthetic_sequence(4, fps=5, seconds=2)
    assert len(frames) == 10 and [f.camera for f in frames[0]] == [c.name for c in vehicle_cameras()]
    front = [f[0] for f in frames]
    first = {i.object_id: i for i in front[0].instances}
    last = {i.object_id: i for i in front[-1].instances}
    common = set(first) & set(last)
    assert common, "some objects stay in view for two seconds"
    moved = [oid for oid in common if not np.array_equal(first[oid].mask, last[oid].mask)]
    assert moved, "objects move between frames"
    assert all(first[o].category == last[o].category for o in common)


def test_coco_export_round_trips_and_scores_perfect_predictions_at_one():
    gt, pixels = synthetic_coco(21, 5)
    assert len(pixels) == 5 and gt["annotations"]
    frame = synthetic_image(21, 0)
    anns = [a for a in gt["annotations"] if a["image_id"] == 1]
    for ann, inst in zip(anns, frame.instances):
        np.testing.assert_array_equal(decode_rle(ann["segmentation"]), inst.mask)
        assert ann["category_id"] == COCO_IDS[inst.category]
    perfect = [{**a, "score": 1.0} for a in gt["annotations"]]
    assert score_coco(gt, perfect, 5).ap == pytest.approx(1.0)
    shifted = [{**a, "score": 1.0, "category_id": 3 if a["category_id"] != 3 else 1} for a in gt["annotations"]]
    assert score_coco(gt, shifted, 5).ap < 0.5


def test_the_training_data_definition_does_not_drift():
    """The shipped model was trained on seed 1; its masks and classes must stay exactly what they were."""
    digest = hashlib.sha256()
    for index in range(3):
        for inst in synthetic_image(1, index).instances:
            digest.update(np.packbits(inst.mask).tobytes())
            digest.update(bytes([inst.category]))
    assert digest.hexdigest() == "8a2659c12d112f6f2e7f80313fcfb1523e19bc0003fc1804f9a2c32fd6c2c0b0"


def test_training_scenes_are_varied_reproducible_and_exactly_labelled():
    frames = [training_image(3, i) for i in range(12)]
    again = training_image(3, 5)
    np.testing.assert_array_equal(again.image, frames[5].image)
    assert [i.object_id for i in again.instances] == [i.object_id for i in frames[5].instances]
    for frame in frames:
        masks = [inst.mask for inst in frame.instances]
        assert all(m.sum() >= MIN_AREA for m in masks)
        assert np.sum(masks, axis=0).max(initial=0) <= 1  # visible parts never overlap
    # crowds: some scene holds many more people than the evaluation scenes' sidewalks give
    people = max(sum(i.category == CLASS_INDEX["person"] for i in f.instances) for f in frames)
    assert people >= 12


def _person(**kw: object) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((240, 160, 3), np.uint8)
    ids = np.zeros((240, 160), np.uint16)
    draw_billboard(image, ids, 1, "person", False, u=80, v=220, width_px=66, height_px=210, colour=(200, 30, 30),
                   fog=0.0, fog_colour=(0, 0, 0), **kw)  # fmt: skip
    return image, ids == 1


def test_a_dressed_pedestrian_has_skin_top_and_trousers_and_walkers_stride():
    outfit = person_outfit(np.random.default_rng(4))
    image, mask = _person(outfit=outfit)
    for role, (y, x) in {"skin": (26, 80), "top": (90, 80), "legs": (190, 70)}.items():
        assert mask[y, x]
        np.testing.assert_array_equal(image[y, x], [int(c) for c in outfit[role]])
    _, plain = _person()
    np.testing.assert_array_equal(plain, mask)  # clothes change colours, never the mask
    _, walking = _person(outfit=outfit, walking=True)

    def stance(mask: np.ndarray) -> int:  # how far apart the feet are
        columns = np.flatnonzero(mask[210:219].any(axis=0))
        return int(columns[-1] - columns[0])

    assert stance(walking) > 1.5 * stance(plain)  # legs apart in mid-stride


def test_occluders_hide_what_they_cover():
    frame = synthetic_image(21, 0)
    before = {i.object_id: i.mask.copy() for i in frame.instances}
    _occlude(frame, np.random.default_rng(2))
    after = {i.object_id: i.mask for i in frame.instances}
    hidden = np.zeros(frame.image.shape[:2], bool)
    for object_id, mask in before.items():
        now = after.get(object_id, np.zeros_like(mask))
        assert not (now & ~mask).any()  # nothing is added to a mask
        hidden |= mask & ~now
    assert hidden.any()
    # what was cut from the masks is covered by the occluders' flat colours (one per occluder)
    assert len(np.unique(frame.image[hidden], axis=0)) <= 3


def test_augmentation_moves_masks_with_the_pixels():
    frame = synthetic_image(11, 2)
    masks = np.stack([i.mask for i in frame.instances])
    labels = np.array([i.category for i in frame.instances])
    for seed in range(8):
        image, out, kept = augment(frame.image, masks, labels, np.random.default_rng(seed))
        assert image.shape == frame.image.shape and image.dtype == np.uint8
        assert out.shape[1:] == masks.shape[1:] and len(out) == len(kept) <= len(labels)
        assert set(kept.tolist()) <= set(labels.tolist())
        assert np.sum(out, axis=0).max(initial=0) <= 1
        a, b, _ = augment(frame.image, masks, labels, np.random.default_rng(seed))
        np.testing.assert_array_equal(a, image)
        np.testing.assert_array_equal(b, out)
    # zooming out: the scene shrinks into the frame, so every mask shrinks
    image, small = rescale(frame.image, masks, 0.5, np.random.default_rng(0))
    assert image.shape == frame.image.shape and small.shape == masks.shape
    assert 0.2 * masks.sum() < small.sum() < 0.3 * masks.sum()
