"""``bench all``: every benchmark in one run, their figures merged, each next to its same-run baseline.

Baselines: PyTorch eager for the model's optimised paths; ONNX Runtime alone (same model, batch
and threads) for serving and the whole pipeline; a bare kafka-python loop that reads and parses
the same messages for the consumer; decoding and re-encoding every frame for ingest. The host
budget (``host_cpu_ms_per_frame``, :mod:`pipeline.bench.host`) is assembled from the CPU times
these runs measured.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

# (figure, baseline, what the ratio means, target): the summary printed at the end
ROWS = (
    ("onnxruntime_ms_b1", "torch_eager_ms_b1", "eager / ONNX Runtime (x faster)", None),
    ("serving_fps_b8", "onnxruntime_fps_b8", "serving_efficiency", ("serving_efficiency", ">=", 0.9)),
    ("consumer_msgs_per_s", "consumer_baseline_msgs_per_s", "consumer / bare read+parse",
     ("consumer_msgs_per_s", ">=", 3000)),
    ("pipeline_fps", "model_fps", "pipeline_efficiency", ("pipeline_efficiency", ">=", 0.9)),
)  # fmt: skip


def bench_all(*, model_arch: str = "r50_giam", json_path: Path | None = None) -> dict:
    from pipeline.bench.host import budget_table, host_budget
    from pipeline.bench.ingest import bench_ingest
    from pipeline.bench.model import bench_model
    from pipeline.bench.selection import bench_selection
    from pipeline.bench.serving import bench_serving
    from pipeline.bench.streaming import bench_consumer, bench_pipeline

    figures: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    figures["model_arch"] = model_arch
    figures.update(bench_model(model_arch))
    figures.update(bench_serving())
    figures.update(bench_consumer())
    figures.update(bench_pipeline())
    figures.update(bench_ingest())
    figures.update(bench_selection())  # post-processing's CPU per 720p frame (synthetic street frames)
    served = figures["serving_cpu_ms_per_frame_b8"]
    figures["host_cpu_ms_per_frame"] = {
        "ingest": figures["ingest_cpu_ms_per_frame"]["segments"], **served,
        "publish": figures["publish_cpu_ms_per_msg"], "consumer": figures["consumer_cpu_ms_per_msg"],
    }  # fmt: skip
    figures.update(host_budget(figures["host_cpu_ms_per_frame"]))
    serving_size = "640x360 JPEG"
    consumer_size = f"{figures['frame_width']}x{figures['frame_height']}, {figures['instances_per_message']} inst"
    sizes = {"ingest": f"{figures['ingest_frame_width']}x{figures['ingest_frame_height']} H.264",
             "preprocess": serving_size, "network": serving_size, "postprocess": serving_size, "triton": serving_size,
             "publish": consumer_size, "consumer": consumer_size}  # fmt: skip
    print(summary(figures))
    print(f"postprocess (kept instances, RLE included) {figures['postprocess_cpu_ms_per_frame_kept']:.2f} CPU-ms per "
          f"{figures['selection_source']} frame with {figures['postprocess_instances_per_frame']:g} instances; "
          "target <= 1.5 at 10")  # fmt: skip
    by_count = figures["postprocess_cpu_ms_by_instances"]
    print("  per frame, by instances found: " + ", ".join(f"{k}: {v:.2f}" for k, v in by_count.items()))
    print(budget_table(figures["host_cpu_ms_per_frame"], sizes, figures))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def summary(f: dict) -> str:
    lines = [f"\nall benchmarks, {f['machine']}", f"{'figure':<28} {'value':>10} {'baseline':<40} {'ratio':>7}  target"]
    for key, base, meaning, target in ROWS:
        ratio = f[base] / f[key] if key.endswith("_ms_b1") else f[key] / f[base]
        goal = ""
        if target is not None:
            name, _, bound = target
            value = f[name]
            goal = f"{name} >= {bound}: {'met' if value >= bound else f'missed ({value:g})'}"
        lines.append(f"{key:<28} {f[key]:>10.2f} {base + f' {f[base]:.2f}':<40} {ratio:>7.3f}  {meaning}; {goal}")
    p99 = f["paced_latency_p99_ms"]
    for load in sorted(p99, key=int):
        goal = f"  target <= 1000 ms: {'met' if p99[load] <= 1000 else 'missed'}" if load == "75" else ""
        lines.append(f"frame-to-event at {load}% load: p50 {f['paced_latency_p50_ms'][load]:.0f} ms, "
                     f"p99 {p99[load]:.0f} ms{goal}")  # fmt: skip
    return "\n".join(lines)
