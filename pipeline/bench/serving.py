"""``bench serving``: frames per second and latency through the CPU ensemble in the real Triton server,
next to the same ONNX model in ONNX Runtime alone, in the same run.

Requests are sent one after another (latency = one request's round trip). The serving path
includes what ONNX Runtime alone does not: JPEG decoding and resizing in DALI, the
post-processing with RLE encoding, and gRPC. The ratio of the two is the serving efficiency.
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

from pipeline.bench.timing import percentile_ms, time_calls

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

    figures: dict[str, float] = {}
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
                batch = pack_frames(jpegs[:b])
                inp = grpcclient.InferInput("frames", list(batch.shape), "UINT8")
                inp.set_data_from_numpy(batch)
                bar = tqdm(total=warmup + requests, desc=f"serving batch {b}", unit="req", leave=False)

                def call(inp=inp, bar=bar) -> None:
                    client.infer(contract.ENSEMBLE, [inp])
                    bar.update()

                secs = time_calls(call, warmup=warmup, repeats=requests)
                bar.close()
                figures[f"serving_fps_b{b}"] = b * requests / float(secs.sum())
                figures[f"serving_p50_ms_b{b}"] = percentile_ms(secs, 50)
                figures[f"serving_p99_ms_b{b}"] = percentile_ms(secs, 99)
            client.close()

    for b in batches:
        figures[f"serving_efficiency_b{b}"] = figures[f"serving_fps_b{b}"] / figures[f"onnxruntime_fps_b{b}"]
    if 8 in batches:
        figures["serving_efficiency"] = figures["serving_efficiency_b8"]
    _print(figures, batches, spec.name, threads, requests)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        meta = {"model": spec.name, "input": f"{spec.input_height}x{spec.input_width}", "threads": threads,
                "requests": requests, "machine": machine}  # fmt: skip
        json_path.write_text(json.dumps({**figures, **meta}, indent=2) + "\n")
    return figures


def _print(figures: dict[str, float], batches: tuple[int, ...], model: str, threads: int, requests: int) -> None:
    print(f"\n{model}, 640x360 JPEG frames, {threads} threads, {requests} sequential requests per row")
    print(f"{'batch':>5} | {'serving fps':>11} | {'p50 ms':>8} | {'p99 ms':>8} | {'ORT fps':>8} | {'ORT p50 ms':>10} "
          f"| {'efficiency':>10}")  # fmt: skip
    for b in batches:
        f = lambda k, b=b: figures[f"{k}_b{b}"]  # noqa: E731
        serving = f"{f('serving_fps'):>11.1f} | {f('serving_p50_ms'):>8.1f} | {f('serving_p99_ms'):>8.1f}"
        alone = f"{f('onnxruntime_fps'):>8.1f} | {f('onnxruntime_p50_ms'):>10.1f}"
        print(f"{b:>5} | {serving} | {alone} | {f('serving_efficiency'):>10.2f}")
