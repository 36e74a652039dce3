"""Turn one camera's detections, frame after frame, into events.

:class:`CameraStep` is a thin per-camera step: track the frame's observations, then let each
rule registered in :mod:`consumers.analytics` raise its events. All its state is in a
:class:`CameraState` (plain JSON: the tracker's, and each rule's under its name), so a consumer can
persist it with its offsets and resume after a restart exactly where it was. Events come in a
fixed order per frame and their ids are derived from their content, so the same detections always
give the same events with the same ids. Masks stay compressed throughout (:mod:`pipeline.runmasks`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field, model_validator

from consumers.analytics import RULES, FrameContext, FrameMeta, RuleState, event_id
from consumers.rules import CameraRules, Rules, RulesFile, Zone
from consumers.tracking import (
    FrameObservations,
    Observation,
    Track,
    assign,
    assign_by_identity,
    decode_mask,
    vote,
)
from pipeline.messages import Event, FrameDetections, TrackMask
from pipeline.runmasks import RunMasks


class CameraState(BaseModel):
    camera_id: str
    stream_epoch: int = Field(0, description="the run of the camera's source whose frames are being processed")
    next_track: int = 1
    tracks: list[Track] = Field(default_factory=list)
    last_index: int = -1
    last_time: float | None = None
    model_name: str = ""
    model_version: str = ""
    rule_state: dict[str, dict[str, Any]] = Field(default_factory=dict, description="rule name -> its state")

    @model_validator(mode="before")
    @classmethod
    def _rules_owned_their_state_later(cls, data: Any) -> Any:
        """States saved while the rules kept theirs on the camera and its tracks: moved into ``rule_state``."""
        if not isinstance(data, dict) or "rule_state" in data:
            return data
        data = dict(data)
        camera = {k: data.pop(k) for k in ("line_counts", "window_start", "window_peaks", "intervals",
                                           "nominal_interval", "fps_low") if k in data}  # fmt: skip
        zones: dict[str, dict] = {"inside": {}, "pending": {}, "dwelled": {}}
        lines: dict[str, dict] = {"counts": camera.get("line_counts", {}), "anchors": {}, "sides": {}}
        alerts: dict[str, float] = {}
        tracks = []
        for t in data.get("tracks", []):
            t = dict(t)
            tid = t.get("track_id")
            for old, table in (("zones", zones["inside"]), ("pending", zones["pending"]),
                               ("dwelled", zones["dwelled"]), ("anchor", lines["anchors"]),
                               ("line_sides", lines["sides"]), ("last_alert", alerts)):  # fmt: skip
                value = t.pop(old, None)
                if value not in (None, {}, []):
                    table[tid] = value
            tracks.append(t)
        data["tracks"] = tracks
        data["rule_state"] = {
            "zones": zones, "lines": lines, "proximity": {"last_alert": alerts},
            "occupancy": {k: camera[k] for k in ("window_start", "window_peaks") if k in camera},
            "health": {k: camera[k] for k in ("intervals", "nominal_interval", "fps_low") if k in camera},
        }  # fmt: skip
        return data


class CameraStep:
    """Tracker plus event rules for one camera. ``truth=True`` follows the simulator's object ids."""

    def __init__(self, camera_id: str, rules: RulesFile, state: CameraState | None = None, *, truth: bool = False):
        self.camera_id = camera_id
        self.camera, self.rules = rules.for_camera(camera_id)
        self.state = state or CameraState(camera_id=camera_id)
        self.truth = truth
        self.event_rules = [rule(self.camera, self.rules) for rule in RULES]
        self.rule_states: dict[str, RuleState] = {
            rule.name: rule.State.model_validate(self.state.rule_state.get(rule.name, {})) for rule in self.event_rules
        }
        self.prune()  # a state trimmed to fit its record lost some tracks; what the rules kept of them goes too
        # track -> (the masks of the frame it was last seen in, its index there);
        # rebuilt lazily from the state after a restart
        self._masks: dict[str, tuple[RunMasks, int]] = {}
        self._dirty: set[str] = set()  # tracks whose mask changed since the last snapshot

    # -------------------------------------------------------------------------------- entry points

    def consume(self, frame: FrameDetections) -> tuple[list[Event], str | None]:
        """One message of the camera's stream: its events, and why it was skipped (or None).

        Frames are identified by (``stream_epoch``, ``frame_index``). A newer epoch is a restarted
        source: the old stream's open tracks are closed and the camera goes on. An older epoch
        (``stale_stream``) or a frame already processed (``duplicate``) is skipped.
        """
        st = self.state
        if frame.stream_epoch < st.stream_epoch:
            return [], "stale_stream"
        events = self.restart(frame.stream_epoch) if frame.stream_epoch > st.stream_epoch else []
        if frame.frame_index <= st.last_index:
            return events, "duplicate"
        if frame.end_of_stream:
            meta = FrameMeta(frame.camera_id, frame.vehicle_id, frame.frame_index, frame.capture_time, 1, 1,
                             stream_epoch=frame.stream_epoch)  # fmt: skip
            events += self.flush(meta)
            st.last_index = frame.frame_index
            return events, None
        return events + self.process(frame), None

    def restart(self, epoch: int) -> list[Event]:
        """A new run of the camera's source: end the old stream's tracks, keep counts and track numbering."""
        st = self.state
        events = self.end_stream()
        st.stream_epoch, st.last_index, st.last_time = epoch, -1, None
        for rule in self.event_rules:
            rule.restart(self.rule_states[rule.name])
        self._masks.clear()
        self._dirty.clear()
        return events

    def end_stream(self) -> list[Event]:
        """The stream stops without a marker (restarted source, camera idle past its TTL): end its open tracks."""
        st = self.state
        if st.last_index < 0:
            return []
        meta = FrameMeta(self.camera_id, None, st.last_index + 1, st.last_time or 0.0, 1, 1,
                         stream_epoch=st.stream_epoch)  # fmt: skip
        return self.flush(meta)

    def process(self, frame: FrameDetections) -> list[Event]:
        meta = FrameMeta(frame.camera_id, frame.vehicle_id, frame.frame_index, frame.capture_time, frame.width,
                         frame.height, frame.model_name, frame.model_version, frame.decode_errors,
                         frame.stream_epoch)  # fmt: skip
        size = (frame.height, frame.width)
        counts, keep = [], []
        for i, d in enumerate(frame.instances):
            if tuple(d.mask.size) != size:
                raise ValueError(f"mask of query {d.query} is {d.mask.size}, the frame {frame.height}x{frame.width}")
            counts.append(d.mask.counts)
            if d.score >= self.rules.min_score or self.truth:
                keep.append(i)
        masks = RunMasks.from_counts(counts, frame.height, frame.width)
        if len(keep) < len(counts):
            masks = masks.select(keep) if keep else RunMasks.empty(*size)
        items = [Observation(frame.instances[i].class_name, frame.instances[i].score, frame.instances[i].box, masks,
                             index=k) for k, i in enumerate(keep)]  # fmt: skip
        return self.step(meta, FrameObservations(items, masks))

    def step(self, meta: FrameMeta, observations: list[Observation] | FrameObservations) -> list[Event]:
        """Advance by one frame. A frame at or before the last one processed is ignored (replays)."""
        st = self.state
        if meta.frame_index <= st.last_index:
            return []
        if not isinstance(observations, FrameObservations):
            observations = FrameObservations([o for o in observations if o.score >= self.rules.min_score
                                              or self.truth])  # fmt: skip
        frame = self._context(meta, observations)
        events: list[Event] = []
        for rule in self.event_rules:
            if rule.before_tracking:
                events += rule.trigger(frame, self.rule_states[rule.name])
        events += self._track(frame)
        for rule in self.event_rules:
            if not rule.before_tracking:
                events += rule.trigger(frame, self.rule_states[rule.name])
        st.last_index, st.last_time = meta.frame_index, meta.time
        st.model_name, st.model_version = meta.model_name, meta.model_version
        return events

    def flush(self, meta: FrameMeta) -> list[Event]:
        """End every open track (the stream is over): their exits and ends, and the last window."""
        if not meta.model_name:  # an end-of-stream marker carries no model: the events keep the last one
            meta = replace(meta, model_name=self.state.model_name, model_version=self.state.model_version)
        frame = self._context(meta)
        events: list[Event] = []
        for track in list(self.state.tracks):
            if track.confirmed:
                events += self._end_track(track, frame)
        self.state.tracks = []
        for rule in self.event_rules:
            events += rule.close(frame, self.rule_states[rule.name])
        return events

    def snapshot(self) -> CameraState:
        """The state to persist: the tracks' last masks as COCO RLE, once per save rather than once per frame."""
        for t in self.state.tracks:
            if t.track_id in self._dirty:
                masks, j = self._masks[t.track_id]
                t.mask = masks.rle(j)
        self._dirty.clear()
        self.state.rule_state = {name: s.model_dump() for name, s in self.rule_states.items()}
        return self.state

    def prune(self) -> None:
        """Forget what the rules kept about tracks the state no longer has (after :mod:`consumers.snapshots`
        dropped some to fit the record)."""
        live = {t.track_id for t in self.state.tracks}
        for rule in self.event_rules:
            rule.prune(self.rule_states[rule.name], live)
        self.state.rule_state = {name: s.model_dump() for name, s in self.rule_states.items()}

    def forget_masks(self) -> None:
        """Match on the masks saved in the state from now on (after they were trimmed to boxes)."""
        self._masks.clear()
        self._dirty.clear()

    def _context(self, meta: FrameMeta, obs: FrameObservations | None = None) -> FrameContext:
        """What the rules see of a frame; events always name this processor's camera."""
        if meta.camera_id != self.camera_id:
            meta = replace(meta, camera_id=self.camera_id)
        return FrameContext(meta, self.state, obs, self.rule_states, self._mask_of)

    def _mask_of(self, t: Track) -> TrackMask | None:
        """The track's last mask (from the frame ``t.last_index``), as the events about it carry it."""
        if t.track_id in self._masks:
            masks, j = self._masks[t.track_id]
            rle = masks.rle(j)
        elif t.mask:
            rle = t.mask
        else:
            return None
        return TrackMask(frame_index=t.last_index, size=tuple(rle["size"]), counts=rle["counts"], box=t.box)

    # -------------------------------------------------------------------------------- tracking

    def _last_masks(self, tracks: list[Track]) -> RunMasks:
        """The tracks' last masks side by side, gathered from the frames they came from (usually one)."""
        for t in tracks:
            if t.track_id not in self._masks:
                mask = decode_mask(t)
                self._masks[t.track_id] = (mask, 0)
        return RunMasks.gather([self._masks[t.track_id] for t in tracks])

    def _remember(self, t: Track, obs: FrameObservations, j: int) -> None:
        self._masks[t.track_id] = (obs.masks, j)
        self._dirty.add(t.track_id)

    def _forget(self, t: Track) -> None:
        self._masks.pop(t.track_id, None)
        self._dirty.discard(t.track_id)

    def _track(self, frame: FrameContext) -> list[Event]:
        """Assign the frame's observations to tracks; sets ``frame.matched`` to the confirmed ones."""
        st, r, meta, obs = self.state, self.rules, frame.meta, frame.obs
        tracks = st.tracks
        events: list[Event] = []
        if self.truth:
            pairs = assign_by_identity(tracks, obs.items)
        elif tracks and len(obs):
            pairs = assign(tracks, self._last_masks(tracks), obs, r.track_iou)
        else:
            pairs = []
        hit = {ti for ti, _ in pairs}
        matched: list[tuple[Track, int]] = []
        index, now = meta.frame_index, meta.time
        for ti, j in pairs:  # runs for every track of every frame: plain field writes, no validation on assignment
            t, o = tracks[ti], obs.items[j]
            box = o.box if type(o.box) is tuple else tuple(map(float, o.box))  # a message's box: floats already
            t.__dict__.update(last_index=index, last_time=now, box=box, misses=0, hits=t.hits + 1,
                              best_score=max(t.best_score, o.score))  # fmt: skip
            if not self.truth:
                vote(t, o)
            self._remember(t, obs, j)
            matched.append((t, j))
        survivors = []
        for i, t in enumerate(tracks):
            if i in hit:
                survivors.append(t)
                continue
            t.misses += 1
            if not t.confirmed:  # a tentative track that missed: a flicker, no events
                self._forget(t)
            elif t.misses > r.max_misses:
                events += self._end_track(t, frame)
            else:
                survivors.append(t)
        taken = {j for _, j in pairs}
        for j, o in enumerate(obs.items):
            if j in taken:
                continue
            tid = f"{self.camera_id}#gt{o.object_id}" if self.truth else f"{self.camera_id}#{st.next_track}"
            st.next_track += 1
            t = Track(track_id=tid, class_name=o.class_name, first_index=meta.frame_index, first_time=meta.time,
                      last_index=meta.frame_index, last_time=meta.time, box=tuple(float(v) for v in o.box),
                      best_score=o.score, object_id=o.object_id,
                      class_votes={o.class_name: o.score})  # fmt: skip
            self._remember(t, obs, j)
            survivors.append(t)
            matched.append((t, j))
        st.tracks = survivors
        for t, j in matched:
            if not t.confirmed and t.hits >= r.min_hits:
                t.confirmed = True
                events.append(frame.event("track.started", track=t, first_index=t.first_index,
                                          score=round(t.best_score, 4)))  # fmt: skip
            if t.confirmed:
                frame.matched.append((t, j))
        return events

    def _end_track(self, t: Track, frame: FrameContext) -> list[Event]:
        events: list[Event] = []
        for rule in self.event_rules:
            events += rule.track_ended(t, frame, self.rule_states[rule.name])
        events.append(frame.event("track.ended", track=t, index=t.last_index, time=t.last_time,
                                  first_index=t.first_index, duration_s=round(t.last_time - t.first_time, 3),
                                  best_score=round(t.best_score, 4)))  # fmt: skip
        self._forget(t)
        return events


__all__ = ["CameraRules", "CameraState", "CameraStep", "FrameMeta", "Rules", "Zone", "event_id"]
