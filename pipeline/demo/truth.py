"""Ground-truth events of a synthetic vehicle: the event rules applied to the simulator's true masks
and object ids (perfect detection and tracking), frame for frame, for scoring the pipeline."""

from __future__ import annotations

from consumers.camera import CameraStep, FrameMeta
from consumers.rules import RulesFile
from consumers.tracking import Observation
from pipeline.data.classes import class_name
from pipeline.data.synthetic import iter_synthetic_sequence, vehicle_cameras
from pipeline.dense_masks import masks_to_boxes
from pipeline.messages import Event


def truth_events(vehicle_id: str, seed: int, rules: RulesFile, *, cameras: int = 4, fps: float = 10.0,
                 seconds: float = 10.0) -> list[Event]:  # fmt: skip
    """Re-renders the (deterministic) sequence and runs the rules on what is truly there."""
    cams = vehicle_cameras()[:cameras]
    ids = [f"{vehicle_id}/{c.name}" for c in cams]
    procs = {cid: CameraStep(cid, rules, truth=True) for cid in ids}
    events: list[Event] = []
    n = 0
    for index, frames in enumerate(iter_synthetic_sequence(seed, cameras=cams, fps=fps, seconds=seconds)):
        n = index + 1
        for cid, f in zip(ids, frames):
            h, w = f.image.shape[:2]
            obs = [Observation(class_name(i.category), 1.0, tuple(float(v) for v in masks_to_boxes(i.mask[None])[0]),
                               i.mask, i.object_id) for i in f.instances]  # fmt: skip
            events += procs[cid].step(FrameMeta(cid, vehicle_id, index, f.time_s, w, h), obs)
    for cid in ids:
        events += procs[cid].flush(FrameMeta(cid, vehicle_id, n, n / fps, 1, 1))
    return events
