"""``bench serving``: frames per second and latency through the CPU ensemble in the real Triton server,
next to the same ONNX model in ONNX Runtime alone, in the same run.

Latency is measured with requests sent one after another (one request's round trip);
throughput with ``in_flight`` requests outstanding, as ingest sends them, so one request's
decoding and post-processing overlap another's network. The serving path includes what ONNX
Runtime alone does not: JPEG decoding and resizing in DALI, the post-processing with RLE
encoding, gRPC and the ensemble's hand-offs. Throughput over ONNX Runtime's (same model, batch
and threads, same run) is the serving efficiency. Where the time goes comes from the server's
own per-model statistics.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.bench.host import triton_cpu_seconds
from pipeline.bench.timing import percentile_ms, throughput, time_calls

log = logging.getLogger(__name__)


def _frames(n: int) -> list[bytes]:
    from pipeline.data.synthetic import synthetic_image
    from pipeline.ingest.sources import encode_jpeg

    return [encode_jpeg(synthetic_image(2024, i).image) for i in range(n)]


def bench_serving(
    *,
    batches: tuple[int, ...] = (1, 8),
    requests: int = 20,
    warmup: int = 3,
    threads: int = 2,
    in_flight: int = 2,
    weights: Path | None = None,
    json_path: Path | None = None,
) -> dict[str, float]:
    import onnxruntime as ort
    import tritonclient.grpc as grpcclient

    from pipeline.local.triton import LocalTriton, LocalTritonConfig
    from pipeline.model.predictor import normalize
    from pipeline.serving import contract
    from pipeline.serving.client import pack_frames
    from pipeline.serving.repository import RepositoryOptions, build_repository, read_spec

    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="sparseinst-bench-") as tmp:
        repo = build_repository(Path(tmp) / "repo", "cpu", weights=weights,
                                options=RepositoryOptions(cpu_threads=threads))  # fmt: skip
        spec = read_spec(repo)
        jpegs = _frames(max(batches))
        decoded = [cv2.cvtColor(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                   for j in jpegs]  # fmt: skip
        images = np.stack([normalize(im) for im in decoded])  # 640x360 frames: no resize, pad 24 rows
        images = np.pad(images, ((0, 0), (0, 0), (0, spec.input_height - images.shape[2]), (0, 0)))

        # ONNX Runtime alone first, so the idle server's threads cannot disturb it.
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(repo / contract.NETWORK / "1" / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])  # fmt: skip
        for b in batches:
            feed = {"images": images[:b]}
            secs = time_calls(lambda feed=feed: session.run(None, feed), warmup=warmup, repeats=requests)
            figures[f"onnxruntime_fps_b{b}"] = b * requests / float(secs.sum())
            figures[f"onnxruntime_p50_ms_b{b}"] = percentile_ms(secs, 50)
            figures[f"onnxruntime_p99_ms_b{b}"] = percentile_ms(secs, 99)

        with LocalTriton(LocalTritonConfig(model_repository=repo)) as server:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            for b in batches:
                before = _stage_ms(client)
                batch = pack_frames(jpegs[:b])
                inp = grpcclient.InferInput("frames", list(batch.shape), "UINT8")
                inp.set_data_from_numpy(batch)
                bar = tqdm(total=warmup + requests * 2 + in_flight, desc=f"serving batch {b}", unit="req", leave=False)

                def call(inp=inp, bar=bar) -> None:
                    client.infer(contract.ENSEMBLE, [inp])
                    bar.update()

                secs = time_calls(call, warmup=warmup, repeats=requests)
                figures[f"serving_p50_ms_b{b}"] = percentile_ms(secs, 50)
                figures[f"serving_p99_ms_b{b}"] = percentile_ms(secs, 99)
                figures[f"serving_sequential_fps_b{b}"] = b * requests / float(secs.sum())
                # where a request's time goes, from the server's own statistics (per request, ms)
                after = _stage_ms(client)
                for stage in STAGES:
                    figures[f"serving_{stage}_ms_b{b}"] = (after[stage] - before[stage]) / (warmup + requests)
                cpu_before = triton_cpu_seconds(server.process.pid, STAGES)  # type: ignore[union-attr]
                figures[f"serving_fps_b{b}"] = b * throughput(call, calls=requests, concurrency=in_flight)
                cpu_after = triton_cpu_seconds(server.process.pid, STAGES)  # type: ignore[union-attr]
                frames = b * (requests + in_flight)  # the throughput run's calls, its warm ones included
                figures[f"serving_cpu_ms_per_frame_b{b}"] = {
                    ("network" if k == contract.NETWORK else k): round((cpu_after[k] - v) * 1000 / frames, 3)
                    for k, v in cpu_before.items()}  # fmt: skip
                bar.close()
            client.close()

    for b in batches:
        figures[f"serving_efficiency_b{b}"] = figures[f"serving_fps_b{b}"] / figures[f"onnxruntime_fps_b{b}"]
    if 8 in batches:
        figures["serving_efficiency"] = figures["serving_efficiency_b8"]
    _print(figures, batches, spec.name, threads, requests, in_flight)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        meta = {"model": spec.name, "input": f"{spec.input_height}x{spec.input_width}", "threads": threads,
                "requests": requests, "in_flight": in_flight, "machine": machine}  # fmt: skip
        json_path.write_text(json.dumps({**figures, **meta}, indent=2) + "\n")
    return figures


STAGES = ("preprocess", "sparseinst", "postprocess")


def _stage_ms(client, stages: tuple[str, ...] = STAGES) -> dict[str, float]:
    """Cumulative compute time (input + infer + output) and queueing per model of the ensemble, ms."""
    stats = client.get_inference_statistics(as_json=True)
    out = dict.fromkeys(stages, 0.0)
    for model in stats.get("model_stats", []):
        if model["name"] in out:
            inf = model["inference_stats"]
            out[model["name"]] += sum(float(inf.get(k, {}).get("ns", 0)) for k in (
                "queue", "compute_input", "compute_infer", "compute_output")) / 1e6  # fmt: skip
    return out


def _print(figures: dict[str, float], batches: tuple[int, ...], model: str, threads: int, requests: int,
           in_flight: int) -> None:  # fmt: skip
    print(f"\n{model}, 640x360 JPEG frames, {threads} threads; fps with {in_flight} requests in flight, latency "
          f"one request at a time ({requests} requests each)")  # fmt: skip
    print(f"{'batch':>5} | {'serving fps':>11} | {'p50 ms':>8} | {'p99 ms':>8} | {'ORT fps':>8} | {'ORT p50 ms':>10} "
          f"| {'efficiency':>10}")  # fmt: skip
    for b in batches:
        f = lambda k, b=b: figures[f"{k}_b{b}"]  # noqa: E731
        serving = f"{f('serving_fps'):>11.1f} | {f('serving_p50_ms'):>8.1f} | {f('serving_p99_ms'):>8.1f}"
        alone = f"{f('onnxruntime_fps'):>8.1f} | {f('onnxruntime_p50_ms'):>10.1f}"
        print(f"{b:>5} | {serving} | {alone} | {f('serving_efficiency'):>10.2f}")
    print("where one request's time goes (server statistics, ms: queue + compute per model):")
    for b in batches:
        stages = "  ".join(f"{s} {figures[f'serving_{s}_ms_b{b}']:.1f}" for s in STAGES)
        print(f"  batch {b}: {stages}  (round trip p50 {figures[f'serving_p50_ms_b{b}']:.1f})")
