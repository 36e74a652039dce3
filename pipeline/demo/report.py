"""The demo's HTML report: one self-contained file (images inlined, plots as SVG)."""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from pipeline.html_pages import page, table
from pipeline.messages import Event
from pipeline.overlay import draw_instances, jpeg_data_uri

TYPE_COLOURS = {
    "track.started": "#4caf50", "track.ended": "#9e9e9e", "zone.entered": "#2196f3", "zone.exited": "#03a9f4",
    "zone.dwell": "#3f51b5", "line.crossed": "#ff9800", "proximity.alert": "#f44336", "occupancy": "#795548",
    "camera.health": "#9c27b0", "rollout": "#607d8b", "zone.crowded": "#e91e63",
}  # fmt: skip


def _line_plot(series: list[tuple[float, float]], *, width: int = 640, height: int = 160, label: str) -> str:
    if not series:
        return "<p>no data</p>"
    xs, ys = np.array([s[0] for s in series]), np.array([s[1] for s in series])
    x0, x1 = float(xs.min()), float(max(xs.max(), xs.min() + 1e-9))
    y1 = float(max(ys.max(), 1e-9))
    pts = " ".join(f"{40 + (x - x0) / (x1 - x0 or 1) * (width - 50):.1f},{height - 20 - y / y1 * (height - 35):.1f}"
                   for x, y in zip(xs, ys))  # fmt: skip
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(label)}">'
            f'<polyline fill="none" stroke="#1976d2" stroke-width="1.5" points="{pts}"/>'
            f'<text x="4" y="14" font-size="11">{y1:.1f}</text><text x="4" y="{height - 22}" font-size="11">0</text>'
            f'<text x="{width - 140}" y="{height - 4}" font-size="11">{html.escape(label)}</text></svg>')  # fmt: skip


def _timeline(events: list[Event], width: int = 1000) -> str:
    cams = sorted({e.camera_id for e in events})
    if not cams:
        return "<p>no events</p>"
    t0 = min(e.frame_time for e in events)
    t1 = max(max(e.frame_time for e in events), t0 + 1e-9)
    row = 22
    height = row * len(cams) + 30
    marks = []
    for e in events:
        if e.type in ("track.started", "track.ended", "occupancy"):
            continue  # the rows would drown in them; they are counted in the tables
        x = 120 + (e.frame_time - t0) / (t1 - t0) * (width - 130)
        y = 20 + cams.index(e.camera_id) * row
        what = " ".join(str(v) for v in (e.type, e.zone or e.line or "", e.direction or "", e.class_name or "",
                                         e.track_id or "", f"t={e.frame_time:.1f}s") if v)  # fmt: skip
        marks.append(f'<circle cx="{x:.1f}" cy="{y}" r="4" fill="{TYPE_COLOURS.get(e.type, "#000")}">'
                     f"<title>{html.escape(what)}</title></circle>")  # fmt: skip
    labels = "".join(f'<text x="4" y="{24 + i * row}" font-size="11">{html.escape(c)}</text>'
                     for i, c in enumerate(cams))  # fmt: skip
    legend = "".join(f'<span style="color:{c}">● {t}</span>' for t, c in TYPE_COLOURS.items())
    return (f'<div class="legend">{legend}</div><svg width="{width}" height="{height}" role="img" '
            f'aria-label="event timeline">{labels}{"".join(marks)}'
            f'<text x="120" y="{height - 4}" font-size="11">{t0:.1f} s</text>'
            f'<text x="{width - 50}" y="{height - 4}" font-size="11">{t1:.1f} s</text></svg>')  # fmt: skip


def zone_counts(events: list[Event]) -> list[list[object]]:
    table: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for e in events:
        if e.zone and e.type.startswith("zone."):
            table[(e.camera_id, e.zone)][e.type.removeprefix("zone.")] += 1
        if e.type == "occupancy" and e.zone:
            peak = int(e.details.get("total") or 0)
            key = (e.camera_id, e.zone)
            table[key]["peak occupancy"] = max(table[key]["peak occupancy"], peak)
    return [[cam, zone, c["entered"], c["exited"], c["dwell"], c["peak occupancy"]]
            for (cam, zone), c in sorted(table.items())]  # fmt: skip


def line_counts(events: list[Event]) -> list[list[object]]:
    table: Counter[tuple[str, str, str, str]] = Counter()
    for e in events:
        if e.type == "line.crossed":
            table[(e.camera_id, e.line or "", e.class_name or "", e.direction or "")] += 1
    return [[*k, n] for k, n in sorted(table.items())]


def write_demo_report(path: Path, *, summary: dict, frames: list[tuple[np.ndarray, list, str]], events: list[Event],
                 fps_series: list[tuple[float, float]], latency_series: list[tuple[float, float]]) -> Path:  # fmt: skip
    """``frames``: (RGB image, [(mask, class index, score, label or None)], caption)."""
    cells = []
    for image, instances, caption in frames:
        if instances:
            masks = np.stack([m for m, *_ in instances])
            classes = np.array([c for _, c, _, _ in instances])
            scores = np.array([s for _, _, s, _ in instances])
            over = draw_instances(image, masks, classes, scores, labels=[t for *_, t in instances])
        else:
            over = image
        cells.append(f'<figure><img class="overlay" src="{jpeg_data_uri(over)}" alt="{html.escape(caption)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip
    by_type = Counter(e.type for e in events)
    scoring = summary.get("event_precision")
    score_html = ""
    if scoring:
        rows = [[t, summary["event_precision"][t], summary["event_recall"][t]] for t in sorted(scoring)]
        score_html = "<h2>Events against the simulator's ground truth</h2>"
        score_html += table(["type", "precision", "recall"], rows)
    body = (
        f"<h1>SparseInst streaming demo</h1><p>{html.escape(summary.get('headline', ''))}</p>"
        "<h2>Summary</h2>" + table(["", "value"], [[k, json.dumps(v) if isinstance(v, dict | list) else v]
                                                   for k, v in summary.items() if k != "headline"])
        + score_html
        + "<h2>Event timeline</h2>" + _timeline(events)
        + "<h2>Events by type</h2>" + table(["type", "count"], sorted(by_type.items()))
        + "<h2>Zones</h2>" + table(["camera", "zone", "entered", "exited", "dwell", "peak occupancy"],
                                    zone_counts(events))
        + "<h2>Line crossings</h2>" + table(["camera", "line", "class", "direction", "count"], line_counts(events))
        + "<h2>Throughput and latency</h2>" + _line_plot(fps_series, label="published frames/s over time (s)")
        + _line_plot(latency_series, label="frame-to-publish latency ms over time (s)")
        + "<h2>Frames (masks, classes and scores as published; the events raised at each)</h2>"
        + "<div class='frames'>" + "".join(cells) + "</div>"
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page("SparseInst streaming demo", body))
    return path
