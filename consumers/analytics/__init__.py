"""Event rules, one module each, all with one surface: ``trigger(frame) -> list[Event]``.

A rule reads one :class:`~consumers.analytics.frame.FrameContext` (the frame's meta, the camera's
state, the confirmed tracks with their compressed masks) and returns the events it raises.
"""

from consumers.analytics.frame import FrameContext, FrameMeta, event_id
from consumers.analytics.health import HealthRule
from consumers.analytics.lines import LineRule
from consumers.analytics.occupancy import OccupancyRule
from consumers.analytics.proximity import ProximityRule
from consumers.analytics.zones import ZoneRule

__all__ = ["FrameContext", "FrameMeta", "HealthRule", "LineRule", "OccupancyRule", "ProximityRule", "ZoneRule",
           "event_id"]  # fmt: skip
