"""The command line, as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.model import build_model


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=600)


def test_help_lists_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("model", "bench", "demo"):
        assert command in out.stdout


def test_import_official_rejects_the_wrong_architecture_with_exit_code_2(tmp_path):
    path = tmp_path / "base.pth"
    torch.save({"model": build_model("r18_giam_tiny").state_dict()}, path)
    ok = ["model", "import-official", str(path), "--arch", "r18_giam_tiny", "--out", str(tmp_path / "o.pth")]
    assert main(ok) == 0
    out = run_cli("model", "import-official", str(path), "--arch", "r50_base", "--out", str(tmp_path / "x.pth"))
    assert out.returncode == 2
    assert "missing" in out.stderr and "backbone.res2.0.conv3.weight" in out.stderr


@pytest.mark.slow
def test_eval_on_a_synthetic_set_ends_with_the_ap_line():
    out = run_cli("model", "eval", "--synthetic-seed", "4242", "--num-images", "8")
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"AP=(\d\.\d+) AP50=(\d\.\d+) AP75=(\d\.\d+)", last)
    assert match, last
    assert all(0.0 <= float(v) <= 1.0 for v in match.groups())
    assert "car" in out.stdout


@pytest.mark.slow
def test_export_onnx_writes_one_file_per_profile(tmp_path):
    out = run_cli("model", "export-onnx", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in Path(tmp_path).glob("*.onnx")) == [
        "r18_giam_tiny_384x640.onnx",
        "r18_giam_tiny_640x640.onnx",
    ]


@pytest.mark.slow
def test_demo_writes_a_report_and_a_summary(tmp_path):
    summary = tmp_path / "summary.json"
    out = run_cli("demo", "--cameras", "4", "--seconds", "3", "--out", str(tmp_path), "--summary-json", str(summary))
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(summary.read_text())
    assert figures["frames_read"] == figures["frames_published"] == 4 * 30
    assert figures["events"]["track.started"] > 0
    assert set(figures["event_precision"]) == {"zone.entered", "zone.exited", "line.crossed"}
    assert figures["latency_p50_ms"] > 0 and figures["fps"] > 0
    report = (tmp_path / "report.html").read_text()
    assert report.count('class="overlay"') >= 4 and "event timeline" in report


def test_demo_with_video_files_sends_segments_and_says_which_decoder_each_camera_used(tmp_path):
    from tests.test_video import H264, VIDEOS, VP9, clip_head

    if not VIDEOS.is_dir():
        pytest.skip("the shared media folder is not next to this checkout")
    clips = [clip_head(H264, tmp_path / "h264.mp4", 40), clip_head(VP9, tmp_path / "vp9.webm", 30)]
    summary = tmp_path / "summary.json"
    out = run_cli("demo", "--source", str(clips[0]), "--source", str(clips[1]), "--out", str(tmp_path / "demo"),
                  "--summary-json", str(summary))  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(summary.read_text())
    assert figures["frames_read"] == figures["frames_published"] == 70
    assert [(s["transport"], s["codec"]) for s in figures["sources"]] == [("segments", "h264"), ("segments", "vp9")]
    assert figures["segments_by_decoder"] == {"cam-0": {"ffmpeg": 2}, "cam-1": {"dali-cpu": 1}}
    report = (tmp_path / "demo" / "report.html").read_text()
    assert report.count('class="overlay"') >= 2  # frames decoded from their segments for the report


@pytest.mark.slow
def test_an_exported_coco_set_evaluates_through_the_coco_path(tmp_path):
    out = run_cli("data", "export-coco", "--seed", "31", "--num-images", "4", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "images").glob("*.jpg"))) == 4
    ev = run_cli("model", "eval", "--coco-json", str(tmp_path / "annotations.json"), "--images-dir",
                 str(tmp_path / "images"))  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    assert re.fullmatch(r"AP=\S+ AP50=\S+ AP75=\S+", ev.stdout.strip().splitlines()[-1])
