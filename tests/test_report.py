"""The demo report renders in headless Chromium, with its overlay frames drawn on screen."""

from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pytest

from pipeline.data.synthetic import synthetic_image
from pipeline.demo.report import write_demo_report
from pipeline.messages import Event
from pipeline.overlay import draw_instances

pytestmark = pytest.mark.slow

MARK = (255, 0, 255)  # an outline colour the report never uses, injected to find the images on screen


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("no Chromium found: 'make setup' installs it (apt package 'chromium')")


def test_the_report_renders_with_overlays(tmp_path):
    frames = []
    for i in range(12):
        f = synthetic_image(11, i)
        instances = [(inst.mask, inst.category, 0.9, f"#{inst.object_id}") for inst in f.instances if inst.area > 300]
        if len(instances) >= 2 and len(frames) < 4:
            frames.append((f.image, instances, f"cam-{i} frame {i}"))
    events = [Event(event_id=f"e{i}", type="zone.entered", camera_id="cam-0", frame_index=i, frame_time=i / 10,
                    track_id="cam-0#1", class_name="car", zone="lane", details={"share": 0.6, "kind": "generic"})
              for i in range(3)]  # fmt: skip
    summary = {"headline": "test", "frames_published": 4, "event_precision": {"zone.entered": 1.0},
               "event_recall": {"zone.entered": 1.0}}  # fmt: skip
    report = write_demo_report(tmp_path / "report.html", summary=summary, frames=frames, events=events,
                          fps_series=[(0, 10), (1, 12)], latency_series=[(0, 50), (1, 60)])  # fmt: skip
    html = report.read_text().replace("</style>", "img.overlay{outline:2px solid #ff00ff;outline-offset:-2px}</style>")
    marked = tmp_path / "marked.html"
    marked.write_text(html)
    shot = tmp_path / "shot.png"
    run = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1400,2200", f"--screenshot={shot}", marked.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shot.is_file(), run.stderr[-2000:]
    image = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    outline = np.all(image == MARK, axis=-1).astype(np.uint8)
    _, _, boxes, _ = cv2.connectedComponentsWithStats(outline)
    rendered = [b for b in boxes[1:] if b[2] > 200 and b[3] > 100]  # x, y, w, h, area of each outlined image
    assert len(rendered) == 4, f"{len(rendered)} overlay images on screen"
    for (x, y, w, h, _), (raw, instances, _) in zip(sorted(rendered, key=lambda b: (b[1], b[0])), frames):
        shown = cv2.resize(image[y + 2 : y + h - 2, x + 2 : x + w - 2], (raw.shape[1], raw.shape[0]),
                           interpolation=cv2.INTER_AREA).astype(np.float32)  # fmt: skip
        masks = np.stack([m for m, *_ in instances])
        classes, scores = np.array([c for _, c, _, _ in instances]), np.array([s for _, _, s, _ in instances])
        drawn = draw_instances(raw, masks, classes, scores, labels=[t for *_, t in instances])
        tinted = masks.any(axis=0)
        # on screen, the masked pixels look like the overlay, not like the bare frame
        to_overlay = np.abs(shown[tinted] - drawn[tinted]).mean()
        to_raw = np.abs(shown[tinted] - raw[tinted]).mean()
        assert to_overlay < 0.6 * to_raw, (to_overlay, to_raw)
