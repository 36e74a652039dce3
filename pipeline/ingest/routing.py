"""Which model version answers a frame and who else sees it: the seam between ingest and rollouts.

Ingest owns these protocols; the rollout package implements them (its state is a :class:`Route`, its
follower a :class:`Router`). With no router, or no route, every frame goes to the configured
ensemble. :func:`plan` splits a batch by version; :class:`ShadowReports` writes what the
controller judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipeline.ingest.sources import Captured, CapturedFrame, CapturedSegment
from pipeline.messages import FrameDetections, ShadowResult
from pipeline.publish import DetectionPublisher
from pipeline.serving.client import FrameFailure


class Route(Protocol):
    """One rollout's traffic split: live answers, canary cameras go to the candidate, shadowed frames to both."""

    @property
    def rollout_id(self) -> str: ...

    @property
    def live_ensemble(self) -> str: ...

    @property
    def candidate_ensemble(self) -> str | None: ...

    def serves_candidate(self, camera_id: str) -> bool:
        """The candidate answers this camera's frames (sticky per camera)."""
        ...

    def shadows(self, camera_id: str, frame_index: int) -> bool:
        """This live frame is also sent to the candidate, for judging only."""
        ...


class Router(Protocol):
    def current(self) -> Route | None:
        """The route for the next batch; ``None`` when no rollout runs."""
        ...


@dataclass
class Planned:
    """One request of a batch: frames for one ensemble, and which of them the candidate also sees (shadow).

    A segment's request names the image ensemble of its version (``ensemble``); it is sent to the
    segment ensemble pinned to the same version. Its ``frames`` are the segment's.
    """

    frames: list[CapturedFrame]
    ensemble: str
    route: Route | None = None
    candidate: bool = False  # canary frames served by the candidate (live answers them if it fails)
    shadow: list[CapturedFrame] = field(default_factory=list)
    segment: CapturedSegment | None = None


def plan(batch: list[Captured], route: Route | None, default_ensemble: str) -> list[Planned]:
    """Split ``batch`` by version: canary cameras to the candidate, the rest to live with their shadow frames.

    Every frame of ``batch`` is in exactly one request (a shadow frame is live's, sent again for judging);
    JPEG frames share requests, each segment is a request of its own and is shadowed as a whole.
    """
    frames = [f for f in batch if isinstance(f, CapturedFrame)]
    out = _plan_frames(frames, route, default_ensemble) if frames else []
    for s in batch:
        if isinstance(s, CapturedSegment):
            refs = s.frame_refs()
            if route is None:
                out.append(Planned(refs, default_ensemble, segment=s))
            elif route.candidate_ensemble and route.serves_candidate(s.camera_id):
                out.append(Planned(refs, route.candidate_ensemble, route, candidate=True, segment=s))
            else:
                shadowed = bool(route.candidate_ensemble) and route.shadows(s.camera_id, s.frame_index)
                out.append(Planned(refs, route.live_ensemble, route, shadow=refs if shadowed else [], segment=s))
    return out


def _plan_frames(batch: list[CapturedFrame], route: Route | None, default_ensemble: str) -> list[Planned]:
    if route is None:
        return [Planned(batch, default_ensemble)]
    candidate = route.candidate_ensemble
    canary = [f for f in batch if candidate and route.serves_candidate(f.camera_id)]
    live = [f for f in batch if not (candidate and route.serves_candidate(f.camera_id))]
    out = []
    if live:
        shadow = [f for f in live if route.shadows(f.camera_id, f.frame_index)] if candidate else []
        out.append(Planned(live, route.live_ensemble, route, shadow=shadow))
    if canary:
        assert candidate is not None
        out.append(Planned(canary, candidate, route, candidate=True))
    return out


class ShadowReports:
    """What the rollout controller judges, on the shadow topic (never on detections)."""

    def __init__(self, publisher: DetectionPublisher, topic: str) -> None:
        self.publisher, self.topic = publisher, topic

    def report(self, route: Route, frame: CapturedFrame, **fields: object) -> None:
        ids = {"rollout_id": route.rollout_id, "camera_id": frame.camera_id, "stream_epoch": frame.stream_epoch,
               "frame_index": frame.frame_index}  # fmt: skip
        result = ShadowResult(**ids, **fields)  # type: ignore[arg-type]
        self.publisher.send(self.topic, frame.camera_id, result.model_dump_json().encode(), "shadow_results")

    def compare(self, route: Route, live_frames: list[CapturedFrame], live: list | None, live_ms: float,
                shadow_frames: list[CapturedFrame], answers: list | None, error: BaseException | None,
                ms: float) -> None:  # fmt: skip
        """Live's and the candidate's answers for each shadowed frame that live answered."""
        by_frame = {id(f): r for f, r in zip(live_frames, live or [])}
        for i, f in enumerate(shadow_frames):
            mine = by_frame.get(id(f))
            theirs = answers[i] if answers is not None else None
            if isinstance(mine, FrameFailure) or mine is None:
                continue  # the frame itself was refused or lost: nothing to compare
            self.report(route, f, live=mine, live_latency_ms=live_ms, candidate_latency_ms=ms,
                        candidate=theirs if isinstance(theirs, FrameDetections) else None,
                        candidate_error=f"{type(error).__name__}: {error}" if error is not None else
                        (f"refused: {theirs.reason}" if isinstance(theirs, FrameFailure) else None))  # fmt: skip
