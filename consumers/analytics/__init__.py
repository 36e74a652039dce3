"""Event rules, one module each, each owning its state (see :mod:`consumers.analytics.base`).

``RULES`` is the registration: the rules every camera runs, in the order their events come within
a frame. A new rule is a module with a :class:`~consumers.analytics.base.Rule` subclass and one
line here (plus, when it raises a new event type, that type in ``pipeline.messages.EventType``,
the wire contract subscribers read, and its thresholds in :class:`consumers.rules.Rules`).
"""

from consumers.analytics.base import Rule, RuleState
from consumers.analytics.crowding import CrowdingRule
from consumers.analytics.frame import FrameContext, FrameMeta, event_id
from consumers.analytics.health import HealthRule
from consumers.analytics.lines import LineRule
from consumers.analytics.occupancy import OccupancyRule
from consumers.analytics.proximity import ProximityRule
from consumers.analytics.zones import ZoneRule

RULES: tuple[type[Rule], ...] = (HealthRule, ZoneRule, LineRule, ProximityRule, OccupancyRule, CrowdingRule)

__all__ = ["RULES", "CrowdingRule", "FrameContext", "FrameMeta", "HealthRule", "LineRule", "OccupancyRule",
           "ProximityRule", "Rule", "RuleState", "ZoneRule", "event_id"]  # fmt: skip
