"""``bench model``: milliseconds per frame of one architecture in PyTorch eager, PyTorch with
folded norms and channels-last, and ONNX Runtime, at batch 1 and 8, all in the same run."""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.bench.timing import time_calls
from pipeline.model.build import build_model
from pipeline.model.export import INPUT_NAME, export_onnx
from pipeline.model.fuse import optimize_for_cpu

log = logging.getLogger(__name__)

OFFICIAL_EAGER_MS = 442.0  # official implementation, r50_giam, 640x640, batch 1, 2 CPU threads


def bench_model(
    arch: str = "r50_giam",
    *,
    height: int = 640,
    width: int = 640,
    batches: tuple[int, ...] = (1, 8),
    repeats: int = 3,
    threads: int | None = None,
    json_path: Path | None = None,
) -> dict[str, float]:
    import onnxruntime as ort

    threads = threads or min(os.cpu_count() or 1, torch.get_num_threads())
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(arch).eval()  # timings do not depend on the weights' values
    fused = optimize_for_cpu(model)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / f"{arch}.onnx"
        export_onnx(model, onnx_path, height=height, width=width, verify_batch=1)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        for b in batches:
            x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (b, 3, height, width)).astype(np.float32))
            x_cl = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                eager = time_calls(lambda x=x: model(x), warmup=1, repeats=repeats)
                opt = time_calls(lambda x=x_cl: fused(x), warmup=1, repeats=repeats)
            feed = {INPUT_NAME: x.numpy()}
            onnx = time_calls(lambda feed=feed: session.run(None, feed), warmup=1, repeats=repeats)
            results[f"torch_eager_ms_b{b}"] = float(np.median(eager) * 1000 / b)
            results[f"torch_optimized_ms_b{b}"] = float(np.median(opt) * 1000 / b)
            results[f"onnxruntime_ms_b{b}"] = float(np.median(onnx) * 1000 / b)
            log.info("batch %d done", b)
    print_table(arch, height, width, threads, batches, results)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2))
    return results


def print_table(arch: str, h: int, w: int, threads: int, batches: tuple[int, ...], r: dict[str, float]) -> None:
    print(f"model {arch} at {h}x{w}, {threads} CPU threads, {platform.processor() or platform.machine()}")
    print(f"{'batch':>5} {'torch eager':>12} {'torch opt':>10} {'onnxruntime':>12} {'eager/ort':>10} {'eager/opt':>10}")
    for b in batches:
        e, o, x = r[f"torch_eager_ms_b{b}"], r[f"torch_optimized_ms_b{b}"], r[f"onnxruntime_ms_b{b}"]
        print(f"{b:>5} {e:>10.1f}ms {o:>8.1f}ms {x:>10.1f}ms {e / x:>9.2f}x {e / o:>9.2f}x")
    print("(milliseconds per frame; 'torch opt' folds norms into convs and uses channels-last;")
    print(
        f" the official implementation's eager forward took {OFFICIAL_EAGER_MS:.0f} ms at 640x640, batch 1, 2 threads)"
    )
