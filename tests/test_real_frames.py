"""Box scoring for hand-drawn boxes on real frames, and the real-street annotation set itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.data.boxes import GROUPS, score_boxes
from pipeline.data.coco import iter_coco_images

FIXTURE = Path(__file__).parent / "fixtures" / "real_street_boxes.json"
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"

GT = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
    "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 8, "name": "truck"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 50], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 10, 20, 50], "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 8, "bbox": [100, 20, 80, 40], "iscrowd": 0},
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [185, 5, 10, 6], "iscrowd": 1},
    ],
}


def _det(category_id: int, bbox: list[float], score: float) -> dict:
    return {"image_id": 1, "category_id": category_id, "bbox": bbox, "score": score}


def test_hits_false_alarms_duplicates_and_ignored_boxes_are_counted():
    results = [
        _det(1, [11, 11, 20, 48], 0.9),  # finds person 1
        _det(1, [12, 10, 19, 50], 0.8),  # a second detection of person 1: a false alarm
        _det(1, [120, 60, 20, 30], 0.7),  # nothing there: a false alarm
        _det(3, [102, 22, 78, 38], 0.6),  # the truck called a car: still a vehicle found
        _det(3, [185, 5, 10, 6], 0.9),  # on a box marked too small to judge: not scored
        _det(1, [50, 10, 20, 50], 0.1),  # person 2, but below the score threshold
    ]
    scores = score_boxes(GT, results, score_threshold=0.3)
    person, vehicle = scores["person"], scores["vehicle"]
    assert (person.boxes, person.found, person.detections, person.false_alarms) == (2, 1, 3, 2)
    assert (vehicle.boxes, vehicle.found, vehicle.detections, vehicle.false_alarms) == (1, 1, 1, 0)
    assert person.recall == 0.5 and person.precision == pytest.approx(1 / 3)
    assert score_boxes(GT, results, score_threshold=0.05)["person"].recall == 1.0


def test_the_real_street_set_is_well_formed():
    gt = json.loads(FIXTURE.read_text())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    assert set(names.values()) <= {n for members in GROUPS.values() for n in members}
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height, a
    scored = [names[a["category_id"]] for a in gt["annotations"] if not a["iscrowd"]]
    assert sum(n == "person" for n in scored) >= 20 and sum(n != "person" for n in scored) >= 20
    assert all(im["file_name"].startswith(("videos/", "images/")) for im in gt["images"])


@pytest.mark.skipif(not MEDIA.is_dir(), reason="the shared media folder is not next to this checkout")
def test_every_listed_frame_reads_at_its_annotated_size():
    # iter_coco_images checks each image's size against the json and reads video frames in order
    read = [info["id"] for info, _ in iter_coco_images(FIXTURE, MEDIA)]
    assert read == [im["id"] for im in json.loads(FIXTURE.read_text())["images"]]
