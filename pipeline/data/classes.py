"""COCO class names in detectron2's contiguous order, and their COCO category ids."""

from __future__ import annotations

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

# COCO category ids skip some numbers; index i of COCO_CLASSES has id COCO_IDS[i].
COCO_IDS: tuple[int, ...] = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))

CLASS_INDEX = {name: i for i, name in enumerate(COCO_CLASSES)}

# The classes the synthetic simulator draws (a driving-scene subset of COCO).
SCENE_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light")


def class_name(index: int) -> str:
    return COCO_CLASSES[index] if 0 <= index < len(COCO_CLASSES) else f"class_{index}"
