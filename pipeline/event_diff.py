"""What a replay changed: events added, removed and changed between two runs, per type and camera.

Event ids are derived from what an event is about (camera, type, track, zone or line, frame), so
the same event in both runs has the same id. *Changed* means the same id with other content
(class, direction, details); the producing model's name and version are not content, nor is the
track's mask (another model's masks differ by some pixels on every event: the diff is about decisions).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.html_pages import page, table
from pipeline.messages import Event

IGNORED = {"model_name", "model_version", "mask"}
EXAMPLES = 5  # per type and kind in the report


def _content(e: Event) -> dict:
    return e.model_dump(exclude=IGNORED)


@dataclass
class EventDiff:
    baseline: str
    replay: str
    baseline_events: int = 0
    replay_events: int = 0
    same: int = 0
    added: list[Event] = field(default_factory=list)
    removed: list[Event] = field(default_factory=list)
    changed: list[tuple[Event, Event]] = field(default_factory=list)  # (baseline, replay)

    @property
    def differences(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)

    def table(self) -> dict[str, dict[str, dict[str, int]]]:
        """kind (added/removed/changed) -> type -> camera -> events."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        rows = [("added", e) for e in self.added] + [("removed", e) for e in self.removed]
        rows += [("changed", new) for _, new in self.changed]
        for kind, e in rows:
            cams = out.setdefault(kind, {}).setdefault(e.type, {})
            cams[e.camera_id] = cams.get(e.camera_id, 0) + 1
        return out

    def summary(self) -> dict:
        count = lambda events: dict(Counter(e.type for e in events))  # noqa: E731
        return {
            "baseline": self.baseline, "replay": self.replay, "baseline_events": self.baseline_events,
            "replay_events": self.replay_events, "same": self.same, "added": len(self.added),
            "removed": len(self.removed), "changed": len(self.changed), "added_by_type": count(self.added),
            "removed_by_type": count(self.removed), "changed_by_type": count([n for _, n in self.changed]),
            "by_type_and_camera": self.table(),
        }  # fmt: skip


def diff_events(baseline: list[Event], replay: list[Event], *, baseline_name: str = "live",
                replay_name: str = "replay") -> EventDiff:  # fmt: skip
    old = {e.event_id: e for e in baseline}
    new = {e.event_id: e for e in replay}
    d = EventDiff(baseline_name, replay_name, len(old), len(new))
    for eid, e in new.items():
        if eid not in old:
            d.added.append(e)
        elif _content(old[eid]) != _content(e):
            d.changed.append((old[eid], e))
        else:
            d.same += 1
    d.removed = [e for eid, e in old.items() if eid not in new]
    order = lambda e: (e.camera_id, e.frame_index, e.type)  # noqa: E731
    d.added.sort(key=order)
    d.removed.sort(key=order)
    d.changed.sort(key=lambda p: order(p[1]))
    return d


def write_diff_report(diff: EventDiff, out: Path, meta: dict | None = None) -> tuple[Path, Path]:
    """``diff.json`` and a self-contained ``diff.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {**(meta or {}), **diff.summary()}
    json_path = out / "diff.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    esc = html.escape
    parts = [f"<h1>Events: {esc(diff.replay)} against {esc(diff.baseline)}</h1>",
             f"<p>{diff.baseline_events} events before, {diff.replay_events} after: {diff.same} the same, <b>"
             f"{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed</b>.</p>"]  # fmt: skip
    if meta:
        parts.append(table(["", "value"], [[k, v] for k, v in meta.items()]))
    by_type = diff.table()
    cameras = sorted({c for kinds in by_type.values() for cams in kinds.values() for c in cams})
    if cameras:
        parts.append("<h2>By type and camera</h2><table><tr><th>kind</th><th>type</th>"
                     + "".join(f"<th>{esc(c)}</th>" for c in cameras) + "</tr>")  # fmt: skip
        for kind, types in by_type.items():
            for kind_type, cams in sorted(types.items()):
                cells = "".join(f"<td>{cams.get(c, '')}</td>" for c in cameras)
                parts.append(f"<tr><td>{kind}</td><td>{esc(kind_type)}</td>{cells}</tr>")
        parts.append("</table>")
    for kind, rows in (("added", [(None, e) for e in diff.added]), ("removed", [(e, None) for e in diff.removed]),
                       ("changed", diff.changed)):  # fmt: skip
        if not rows:
            continue
        parts.append(f"<h2>Examples: {kind}</h2><table><tr><th>type</th><th>camera</th><th>frame</th>"
                     f"<th>{esc(diff.baseline)}</th><th>{esc(diff.replay)}</th></tr>")  # fmt: skip
        shown: Counter[str] = Counter()
        for before, after in rows:
            e = after or before
            assert e is not None
            if shown[e.type] >= EXAMPLES:
                continue
            shown[e.type] += 1
            cell = lambda x: "" if x is None else f"<code>{esc(json.dumps(_content(x)))}</code>"  # noqa: E731
            parts.append(f"<tr><td>{esc(e.type)}</td><td>{esc(e.camera_id)}</td><td>{e.frame_index}</td>"
                         f"<td>{cell(before)}</td><td>{cell(after)}</td></tr>")  # fmt: skip
        parts.append("</table>")
    html_path = out / "diff.html"
    html_path.write_text(page(f"Replay diff: {diff.replay}", "\n".join(parts)))
    return json_path, html_path
