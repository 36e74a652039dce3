"""Zones, lines and rules per camera, from a validated YAML file.

Coordinates are fractions of the frame (0..1, x to the right, y down), so one file fits any
resolution. Example::

    defaults:
      min_area: 400
    cameras:
      front:
        zones:
          - {name: ego_lane, kind: ego_lane, polygon: [[0.35, 1.0], [0.47, 0.55], [0.53, 0.55], [0.65, 1.0]]}
        lines:
          - {name: stop_line, points: [[0.0, 0.8], [1.0, 0.8]]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError
from pipeline.paths import checked_file

# the demo's zones and lines, shipped with the package (the demo, the benchmarks and the examples use them)
DEMO_RULES = Path(__file__).resolve().parent / "demo_rules.yaml"

Point = tuple[float, float]
VULNERABLE = ("person", "bicycle", "motorcycle")
VEHICLES = ("car", "truck", "bus")  # what a vulnerable road user is alerted near (riders ride two-wheelers)


def _in_frame(points: list[Point]) -> list[Point]:
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point ({x}, {y}) is outside the frame: coordinates are fractions 0..1")
    return points


class Zone(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["generic", "crosswalk", "ego_lane", "intersection"] = "generic"
    polygon: list[Point] = Field(min_length=3)
    classes: list[str] | None = Field(None, description="only these classes; all when unset")

    _check = field_validator("polygon")(_in_frame)


class Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    points: tuple[Point, Point]
    classes: list[str] | None = None

    @field_validator("points")
    @classmethod
    def _distinct(cls, v: tuple[Point, Point]) -> tuple[Point, Point]:
        _in_frame(list(v))
        if v[0] == v[1]:
            raise ValueError("a line needs two distinct points")
        return v


class Rules(BaseModel):
    """Thresholds shared by all cameras unless a camera overrides them."""

    model_config = ConfigDict(extra="forbid")

    min_area: int = Field(400, ge=1, description="objects with smaller masks are ignored by zones, lines, alerts")
    min_score: float = Field(0.3, ge=0, le=1)
    enter_share: float = Field(0.5, gt=0, le=1, description="share of the mask inside a zone to enter it")
    exit_share: float = Field(0.2, ge=0, lt=1, description="share below which an object has left the zone")
    zone_frames: int = Field(1, ge=1, description="frames in a row past a threshold to enter or leave a zone")
    dwell_s: float = Field(5.0, gt=0, description="zone.dwell once an object has stayed this long")
    proximity_px: float = Field(20.0, ge=0, description="VRU mask within this distance of the ego lane or a vehicle")
    proximity_cooldown_s: float = Field(5.0, ge=0)
    occupancy_window_s: float = Field(5.0, gt=0, description="tumbling window of the occupancy counts")
    track_iou: float = Field(0.2, gt=0, lt=1, description="least IoU to continue a track")
    max_misses: int = Field(5, ge=0, description="frames a track survives without a detection")
    min_hits: int = Field(3, ge=1, description="consecutive detections that confirm a track; events need it")
    stall_s: float = Field(3.0, gt=0, description="camera.health 'stalled' after this long without a frame")
    fps_drop: float = Field(0.5, gt=0, lt=1, description="camera.health 'fps_drop' below this share of nominal")
    crowd_tracks: int | None = Field(None, ge=2, description="zone.crowded at this many tracks in a zone (unset: off)")

    @model_validator(mode="after")
    def _hysteresis(self) -> Rules:
        if self.exit_share >= self.enter_share:
            raise ValueError("exit_share must be below enter_share")
        return self


class CameraRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zones: list[Zone] = Field(default_factory=list)
    lines: list[Line] = Field(default_factory=list)
    rules: Rules | None = None

    @model_validator(mode="after")
    def _unique(self) -> CameraRules:
        names = [z.name for z in self.zones] + [ln.name for ln in self.lines]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"zone/line names must be unique per camera: {sorted(dup)}")
        return self


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Rules = Field(default_factory=Rules)
    cameras: dict[str, CameraRules] = Field(default_factory=dict, description="by camera id or camera name")

    def for_camera(self, camera_id: str) -> tuple[CameraRules, Rules]:
        """Rules of a camera id like ``veh-1/front``: exact id first, then its last path part (``front``)."""
        cam = self.cameras.get(camera_id) or self.cameras.get(camera_id.rsplit("/", 1)[-1]) or CameraRules()
        return cam, cam.rules or self.defaults


MAX_RULES_BYTES = 1 << 20


def load_rules(path: str | Path) -> RulesFile:
    path = checked_file(path, what="rules file", max_bytes=MAX_RULES_BYTES, suffixes=(".yaml", ".yml"))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"rules file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"rules file {path}: not valid YAML: {exc}") from None
    try:
        return RulesFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid rules in {path}: {problems}") from None
