"""The host's CPU per frame, by component, and the cores a GPU host needs for a camera fleet.

Each component is measured where it runs, in the same ``bench all`` run, from process CPU times
(``/proc``, user + system): ingest's segment demux (``bench ingest``, 1080p H.264), the Triton
models' Python-backend stubs and the server process itself while ``bench serving`` runs its
batch-8 throughput requests, the detections publisher and one event processor (``bench
consumer``). The network is listed but left out of the host's sum: on a GPU host it runs on the
GPU. Components are measured at the frame size their benchmark uses (shown in the table), not
scaled.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.local.process import descendants

# component -> what it is, for the table
COMPONENTS = {
    "ingest": "demux into keyframe segments (PyAV), per frame",
    "preprocess": "JPEG decode + resize in DALI (Triton stub)",
    "network": "the network in ONNX Runtime (Triton stub); on the GPU on a GPU host",
    "postprocess": "kept instances to frame size, boxes, RLE (Triton stub)",
    "triton": "the server process: gRPC, ensemble scheduling, tensor hand-offs",
    "publish": "FrameDetections to JSON and the Kafka producer (gzip, acks=all)",
    "consumer": "tracking, rules, exactly-once transactions (one event processor)",
}
ON_GPU = ("network",)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def triton_cpu_seconds(server_pid: int, models: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds so far of each model's Python-backend stubs (by the model folder in their command line) and of
    the server process itself (``triton``)."""
    out = dict.fromkeys((*models, "triton"), 0.0)
    out["triton"] = cpu_seconds(server_pid)
    for pid in descendants(server_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for model in models:
            if f"/{model}/" in cmdline:
                out[model] += cpu_seconds(pid)
                break
    return out


def host_budget(cpu_ms_per_frame: dict[str, float], *, cameras: int = 60, fps: float = 30.0) -> dict:
    """Cores a GPU host needs for ``cameras`` at ``fps``: the host components' CPU-ms per frame x frames per second."""
    host_ms = sum(v for k, v in cpu_ms_per_frame.items() if k not in ON_GPU)
    return {"host_cpu_ms_per_frame_total": round(host_ms, 3), "host_cameras": cameras, "host_fps": fps,
            "host_cores_needed": round(host_ms * cameras * fps / 1000.0, 2)}  # fmt: skip


def budget_table(cpu_ms_per_frame: dict[str, float], sizes: dict[str, str], budget: dict) -> str:
    lines = [f"\nhost CPU per frame ({budget['host_cameras']} cameras at {budget['host_fps']:g} fps on a GPU host)",
             f"{'component':<12} {'CPU-ms/frame':>12}  {'measured at':<16} what"]  # fmt: skip
    for name, ms in cpu_ms_per_frame.items():
        note = " (on the GPU: not counted)" if name in ON_GPU else ""
        lines.append(f"{name:<12} {ms:>12.3f}  {sizes.get(name, ''):<16} {COMPONENTS.get(name, '')}{note}")
    fleet = f"{budget['host_cameras']} x 1080p{budget['host_fps']:g}"
    lines.append(f"{'host total':<12} {budget['host_cpu_ms_per_frame_total']:>12.3f}  -> "
                 f"{budget['host_cores_needed']:.1f} cores for {fleet}")  # fmt: skip
    return "\n".join(lines)
