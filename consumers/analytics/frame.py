"""What a rule sees of one frame, and how it words an event."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from consumers.analytics.regions import polygon_columns
from consumers.rules import Zone
from consumers.tracking import FrameObservations, Track
from pipeline.messages import Event, TrackMask


@dataclass(frozen=True)
class FrameMeta:
    camera_id: str
    vehicle_id: str | None
    frame_index: int
    time: float
    width: int
    height: int
    model_name: str = ""
    model_version: str = ""
    decode_errors: int = 0
    stream_epoch: int = 0


def event_id(*parts: object) -> str:
    return hashlib.sha1("|".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:24]


class FrameContext:
    """One frame of one camera: meta, the camera's state, the rules' states, and the confirmed tracks of the frame.

    ``matched`` pairs each confirmed track with the index of its observation in ``obs``. Mask
    geometry (zone shares, centroids) is computed for all observations at once, on first use.
    """

    def __init__(self, meta: FrameMeta, state, obs: FrameObservations | None = None, states: dict | None = None,
                 mask_of: Callable[[Track], TrackMask | None] | None = None) -> None:  # fmt: skip
        self.meta, self.state = meta, state
        self.mask_of = mask_of  # a track's last mask, for the events about it
        self.states = states or {}  # rule name -> its state (a rule that builds on another reads it here)
        self.obs = obs if obs is not None else FrameObservations([])
        self.matched: list[tuple[Track, int]] = []
        self._shares: dict[str, list[float]] = {}
        self._centroids: list[tuple[float, float]] | None = None

    def share(self, zone: Zone) -> list[float]:
        """Share of each observation's mask inside ``zone``."""
        if zone.name not in self._shares:
            inside = self.obs.masks.overlap(polygon_columns(tuple(zone.polygon), self.meta.width, self.meta.height))
            self._shares[zone.name] = (inside / np.maximum(self.obs.areas, 1)).tolist()
        return self._shares[zone.name]

    def centroid(self, j: int) -> tuple[float, float]:
        if self._centroids is None:
            self._centroids = [tuple(c) for c in self.obs.masks.centroids().tolist()]
        return self._centroids[j]

    def event(self, event_type: str, /, *, track: Track | None = None, zone: str | None = None,
              line: str | None = None, direction: str | None = None, index: int | None = None,
              time: float | None = None, **details: float | int | str | bool | None) -> Event:  # fmt: skip
        meta = self.meta
        index = meta.frame_index if index is None else index
        # the epoch keeps ids of a restarted stream apart; epoch 0 (version 1 messages) keeps the old ids
        epoch = (meta.stream_epoch,) if meta.stream_epoch else ()
        return Event(
            event_id=event_id(meta.camera_id, event_type, track.track_id if track else None, zone, line, direction,
                              index, details.get("status"), *epoch),
            type=event_type, camera_id=meta.camera_id, vehicle_id=meta.vehicle_id,
            stream_epoch=meta.stream_epoch, frame_index=index,
            frame_time=meta.time if time is None else time, model_name=meta.model_name,
            model_version=meta.model_version, track_id=track.track_id if track else None,
            class_name=track.class_name if track else details.pop("class_name", None),  # type: ignore[arg-type]
            zone=zone, line=line, direction=direction, details=details,
            mask=self.mask_of(track) if track is not None and self.mask_of is not None else None,
        )  # fmt: skip
