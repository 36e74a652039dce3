"""The event rules on hand-made masks: zones decided on mask share, line crossings with direction,
tracks that survive short misses, proximity alerts, deterministic ids, and state that resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from consumers.camera import CameraState, CameraStep, FrameMeta
from consumers.rules import RulesFile, load_rules
from consumers.tracking import Observation
from pipeline.errors import ConfigError

W, H = 200, 100

RULES = RulesFile.model_validate({
    "defaults": {"min_area": 20, "min_hits": 2, "max_misses": 2, "occupancy_window_s": 1.0, "dwell_s": 0.5},
    "cameras": {"front": {
        "zones": [{"name": "box", "kind": "ego_lane", "polygon": [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]}],
        "lines": [{"name": "mid", "points": [[0.25, 0.0], [0.25, 1.0]]}],
    }},
})  # fmt: skip


def car(x: int, y: int = 40, w: int = 20, h: int = 20, cls: str = "car") -> Observation:
    mask = np.zeros((H, W), bool)
    mask[y : y + h, max(x, 0) : max(x + w, 0)] = True
    return Observation(cls, 0.9, (x, y, x + w, y + h), mask)


def run(frames: list[list[Observation]], proc: CameraStep | None = None, start: int = 0):
    proc = proc or CameraStep("veh/front", RULES)
    events = []
    for i, obs in enumerate(frames, start):
        events += proc.step(FrameMeta("veh/front", "veh", i, i * 0.1, W, H, "m", "1"), obs)
    return proc, events


def moving_car(n: int = 20, step: int = 10) -> list[list[Observation]]:
    return [[car(5 + step * i)] for i in range(n)]  # left to right across the frame


def test_a_car_crossing_the_frame_starts_crosses_enters_exits_and_ends():
    proc, events = run(moving_car())
    events += proc.flush(FrameMeta("veh/front", "veh", 20, 2.0, W, H))
    kinds = [(e.type, e.zone or e.line, e.direction) for e in events if e.type != "occupancy"]
    assert kinds[0] == ("track.started", None, None)
    assert ("line.crossed", "mid", "negative") in kinds
    assert kinds.count(("zone.entered", "box", None)) == 1
    assert kinds[-1] == ("track.ended", None, None)
    entered = next(e for e in events if e.type == "zone.entered")
    # x from 5+10i: half the 20 px mask is past x=99.5 (the zone edge) at i=9
    assert entered.frame_index == 9 and entered.details["share"] >= 0.5
    crossed = next(e for e in events if e.type == "line.crossed")
    assert crossed.frame_index == 4  # the centroid (14.5 + 10i) passes the line at x=49.75 between frames 3 and 4
    assert crossed.details["count"] == 1


def test_zone_membership_is_decided_on_the_mask_not_the_box():
    # an L-shaped mask whose box centre is inside the zone but most pixels are not
    mask = np.zeros((H, W), bool)
    mask[10:90, 60:95] = True
    mask[80:90, 95:180] = True
    obs = Observation("car", 0.9, (60, 10, 180, 90), mask)
    _, events = run([[obs]] * 4)
    assert not [e for e in events if e.type == "zone.entered"]


def test_a_track_survives_short_misses_but_not_long_ones():
    waiting = [[car(60)]] * 4 + [[]] * 2 + [[car(62)]] * 2 + [[]] * 4  # missed twice, then gone for good
    _, events = run(waiting)
    starts = [e for e in events if e.type == "track.started"]
    ends = [e for e in events if e.type == "track.ended"]
    assert len(starts) == 1 and len(ends) == 1
    assert ends[0].frame_index == 7 and ends[0].details["first_index"] == 0  # last seen; one track throughout


def test_a_flicker_never_becomes_a_track():
    _, events = run([[car(50)], [], [], [], []])
    assert events == [] or all(e.type == "occupancy" for e in events)


def test_a_person_near_the_ego_lane_raises_one_alert_per_cooldown():
    person = lambda x: car(x, w=8, h=30, cls="person")  # noqa: E731
    _, events = run([[person(85)] for _ in range(10)])
    alerts = [e for e in events if e.type == "proximity.alert"]
    assert len(alerts) == 1 and alerts[0].details["target"] == "ego_lane:box"


def test_event_ids_are_deterministic_and_state_resumes_exactly():
    frames = moving_car()
    _, straight = run(frames)
    first, part1 = run(frames[:8])
    saved = CameraState.model_validate_json(first.snapshot().model_dump_json())  # what a consumer commits
    _, part2 = run(frames[8:], CameraStep("veh/front", RULES, saved), start=8)
    assert [e.event_id for e in part1 + part2] == [e.event_id for e in straight]
    _, again = run(frames)
    assert [e.model_dump() for e in again] == [e.model_dump() for e in straight]


def test_replayed_frames_are_ignored():
    proc, _ = run(moving_car(10))
    _, replay = run(moving_car(10), proc)
    assert replay == []


def test_occupancy_is_counted_per_window():
    frames = [[car(150)] for _ in range(25)]  # parked in the zone for 2.5 s
    _, events = run(frames)
    occupancy = [e for e in events if e.type == "occupancy"]
    assert [e.details["car"] for e in occupancy] == [1, 1]
    assert any(e.type == "zone.dwell" for e in events)


def test_rules_files_are_validated_with_the_field_named(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("cameras:\n  front:\n    zones:\n      - {name: z, polygon: [[0, 0], [2, 0], [1, 1]]}\n")
    with pytest.raises(ConfigError, match=r"cameras\.front\.zones\.0\.polygon: .*outside the frame"):
        load_rules(bad)
    bad.write_text("defaults:\n  enter_share: 0.2\n  exit_share: 0.5\n")
    with pytest.raises(ConfigError, match="exit_share must be below enter_share"):
        load_rules(bad)
    with pytest.raises(ConfigError, match=r"none\.yaml"):
        load_rules(tmp_path / "none.yaml")


def test_decode_errors_and_stalls_become_camera_health_events():
    proc = CameraStep("veh/front", RULES)
    events = proc.step(FrameMeta("veh/front", "veh", 0, 0.0, W, H), [])
    events += proc.step(FrameMeta("veh/front", "veh", 1, 0.1, W, H, decode_errors=2), [])
    events += proc.step(FrameMeta("veh/front", "veh", 2, 9.0, W, H), [])  # nearly 9 s without a frame
    events += proc.step(FrameMeta("veh/front", "veh", 3, 19.0, W, H, decode_errors=1), [])  # both at once
    health = [e for e in events if e.type == "camera.health"]
    assert [(e.details["status"], e.frame_index) for e in health] == [
        ("decode_errors", 1),
        ("stalled", 2),
        ("decode_errors", 3),
        ("stalled", 3),
    ]
    assert len({e.event_id for e in health}) == 4


# ------------------------------------------------------------------------------ stream identity


def _frames(epoch: int, n: int, camera: str = "veh-1/right", version: int = 2):
    from pipeline.data.detections import moving_cars

    frames = moving_cars(n, camera_id=camera, instances=2, stream_epoch=epoch)
    return [f.model_copy(update={"schema_version": version}) for f in frames]


def test_a_restarted_source_is_a_new_stream_old_tracks_end_and_its_frames_are_all_processed():
    from consumers.camera import CameraStep
    from consumers.rules import RulesFile

    proc = CameraStep("veh-1/right", RulesFile())
    first = [e for f in _frames(100, 20) for e in proc.consume(f)[0]]
    started = [e for e in first if e.type == "track.started"]
    assert started and not [e for e in first if e.type == "track.ended"]
    second: list = []
    skipped = []
    for f in _frames(200, 10):  # the new run's indices start at 0 again
        events, why = proc.consume(f)
        second += events
        skipped.append(why)
    assert skipped == [None] * 10  # nothing of the new run is taken for a replay
    ended = [e for e in second if e.type == "track.ended"]
    assert {e.track_id for e in ended} >= {e.track_id for e in started}  # the old stream's tracks were closed
    new_tracks = {e.track_id for e in second if e.type == "track.started"}
    assert new_tracks and not new_tracks & {e.track_id for e in started}  # numbering goes on
    ids = [e.event_id for e in first + second]
    assert len(ids) == len(set(ids))


def test_duplicates_and_frames_of_an_older_stream_are_skipped_and_said_why():
    from consumers.camera import CameraStep
    from consumers.rules import RulesFile

    proc = CameraStep("veh-1/right", RulesFile())
    frames = _frames(200, 5)
    for f in frames:
        proc.consume(f)
    assert proc.consume(frames[3]) == ([], "duplicate")
    assert proc.consume(_frames(100, 8)[7]) == ([], "stale_stream")


def test_version_1_messages_are_still_read_as_epoch_0():
    from pipeline.messages import FrameDetections

    frame = _frames(0, 1, version=1)[0]
    text = frame.model_dump_json(exclude={"stream_epoch"})
    parsed = FrameDetections.model_validate_json(text)
    assert parsed.schema_version == 1 and parsed.stream_epoch == 0
    with pytest.raises(ValueError):
        FrameDetections.model_validate_json(text.replace('"schema_version":1', '"schema_version":3'))


def test_rules_files_and_repositories_are_checked(tmp_path):
    from consumers.rules import load_rules
    from pipeline.errors import ConfigError
    from pipeline.paths import checked_repository

    big = tmp_path / "rules.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="more than"):
        load_rules(big)
    with pytest.raises(ConfigError, match="expected a"):
        load_rules(tmp_path / "passwd")
    repo = tmp_path / "repo"
    (repo / "model" / "1").mkdir(parents=True)
    checked_repository(repo)
    (repo / "model" / "1" / "escape").symlink_to("/etc")
    with pytest.raises(ConfigError, match="outside the repository"):
        checked_repository(repo)


# ---------------------------------------------------------------- states saved by an earlier layout


def _frames_of(camera: str):
    """The frames the fixture was recorded on: moving cars, every third of them a person, then the end marker."""
    from pipeline.data.detections import moving_cars

    out = []
    for f in moving_cars(80, camera_id=camera, instances=6, stream_epoch=1_700_000_000_000, seed=4):
        dets = [d.model_copy(update={"class_name": "person", "class_id": 0}) if d.query % 3 == 0 else d
                for d in f.instances]  # fmt: skip
        out.append(f.model_copy(update={"instances": dets}))
    return [*out, out[-1].model_copy(update={"frame_index": 80, "instances": [], "end_of_stream": True})]


RECORDED = json.loads((Path(__file__).parent / "fixtures" / "camera_states_before_rule_state.json").read_text())


@pytest.mark.parametrize(("camera", "raised_after_the_save"), [
    ("veh-1/front", {"zone.entered", "zone.exited", "zone.dwell", "proximity.alert", "occupancy", "track.ended"}),
    ("veh-1/right", {"line.crossed", "zone.exited", "zone.dwell", "proximity.alert", "occupancy", "track.ended"}),
])  # fmt: skip
def test_a_state_saved_when_the_rules_kept_theirs_on_the_tracks_resumes_with_the_same_events(
    camera, raised_after_the_save
):
    """Recorded with the version that kept zone membership, line sides, alert times and windows on the camera
    and its tracks: its events from scratch, its saved state at frame 50 and its events after it."""
    from consumers.rules import DEMO_RULES

    rules, frames, recorded = load_rules(DEMO_RULES), _frames_of(camera), RECORDED["cameras"][camera]
    fresh = CameraStep(camera, rules)
    assert [e.event_id for f in frames for e in fresh.consume(f)[0]] == recorded["events_all"]
    old = recorded["state"]
    assert "line_sides" in old["tracks"][0] and "rule_state" not in old  # the earlier layout
    resumed = CameraStep(camera, rules, CameraState.model_validate(old))
    after = [[e.event_id, e.type] for f in frames[RECORDED["split"] :] for e in resumed.consume(f)[0]]
    assert after == recorded["events_after"]
    assert raised_after_the_save <= {t for _, t in after}  # the state carried what each rule needs


def test_a_crowded_zone_is_raised_once_per_episode_and_the_episode_survives_a_restart():
    crowd = [[car(105 + 30 * k) for k in range(3)] for _ in range(12)]  # three cars standing in the zone
    rules = RULES.model_copy(update={"defaults": RULES.defaults.model_copy(update={"crowd_tracks": 3})})
    _, events = run(crowd, CameraStep("veh/front", rules))
    crowded = [(e.zone, e.details) for e in events if e.type == "zone.crowded"]
    assert crowded == [("box", {"tracks": 3, "classes": "car"})]
    proc, _ = run(crowd[:6], CameraStep("veh/front", rules))
    saved = CameraState.model_validate_json(proc.snapshot().model_dump_json())
    assert saved.rule_state["crowding"] == {"crowded": ["box"]}  # the rule's state, saved with the camera's
    resumed = CameraStep("veh/front", rules, saved)
    assert not [e for e in run(crowd[6:], resumed, start=6)[1] if e.type == "zone.crowded"]  # the same episode
    _, two = run(crowd[:4] + [[car(105)]] * 3 + crowd[:4], CameraStep("veh/front", rules))
    assert [e.type for e in two].count("zone.crowded") == 2  # below the threshold ends an episode
    assert "zone.crowded" not in {e.type for e in run(crowd)[1]}  # off unless crowd_tracks is set
