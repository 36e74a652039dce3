"""``bench selection``: what the kept-instance selection saves, the full export against the served graph.

On the same batch (real photos from ``--images``, else synthetic 720p street frames): the rows and
bytes of the network's answer, the network's CPU time in ONNX Runtime, and post-processing's CPU
time over every query against over the kept rows only (``time.process_time``, the median of the
repeats), with a check that both post-processings agree exactly. Each frame is also timed alone
(``postprocess_cpu_ms_by_instances``: CPU-ms per frame by the number of instances it holds).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _frames(images: Path | None, count: int) -> list[np.ndarray]:
    if images is not None:
        import cv2

        paths = sorted(p for p in images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
        frames = [cv2.imread(str(p))[:, :, ::-1].copy() for p in paths]
        if not frames:
            raise FileNotFoundError(f"no JPEG or PNG images under {images}")
        return frames
    from pipeline.data.synthetic import synthetic_image

    return [synthetic_image(seed, 0, 1280, 720).image for seed in range(count)]


def _cpu_ms(fn, repeats: int, clock=time.process_time) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append((clock() - start) * 1000)
    return float(np.median(times))


def bench_selection(*, images: Path | None = None, batch: int = 8, score_threshold: float = 0.3, repeats: int = 5,
                    threads: int = 2, json_path: Path | None = None) -> dict:  # fmt: skip
    import onnxruntime as ort
    from threadpoolctl import threadpool_limits

    from pipeline.model.export import export_onnx
    from pipeline.model.predictor import fixed_input_batch
    from pipeline.serving.postprocess import pack_results, postprocess_frame
    from pipeline.serving.repository import spec_for_checkpoint
    from pipeline.serving.selection import KEPT_OUTPUTS, write_served_network

    spec, model = spec_for_checkpoint()
    frames = _frames(images, batch)
    x, resized = fixed_input_batch(frames, spec.min_size, spec.max_size, spec.input_height, spec.input_width)
    originals = [f.shape[:2] for f in frames]
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(model, Path(tmp) / "raw.onnx", height=spec.input_height, width=spec.input_width).path
        served = write_served_network(raw, Path(tmp) / "served.onnx", score_threshold)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        full_net = ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
        kept_net = ort.InferenceSession(str(served), options, providers=["CPUExecutionProvider"])
        scores, masks = full_net.run(["scores", "pred_masks"], {"images": x})
        kept = kept_net.run(list(KEPT_OUTPUTS), {"images": x})
        net_full = _cpu_ms(lambda: full_net.run(["scores", "pred_masks"], {"images": x}), repeats)
        net_kept = _cpu_ms(lambda: kept_net.run(list(KEPT_OUTPUTS), {"images": x}), repeats)

    def post(s: np.ndarray, m: np.ndarray, q: np.ndarray | None = None, which: range | None = None) -> list:
        return [postprocess_frame(s[i], m[i], originals[i], resized[i], score_threshold=score_threshold,
                                  stride=spec.mask_stride, queries=None if q is None else q[i])
                for i in which or range(len(frames))]  # fmt: skip

    sizes = np.array(originals)
    kept_results = post(*kept)
    same = {k: v.tolist() for k, v in pack_results(post(scores, masks), sizes).items()} == {
        k: v.tolist() for k, v in pack_results(kept_results, sizes).items()}  # fmt: skip
    # one BLAS thread, as the serving model runs it; this thread's CPU (ONNX Runtime's idle threads spin a while)
    with threadpool_limits(1, user_api="blas"):
        post_full = _cpu_ms(lambda: pack_results(post(scores, masks), sizes), repeats, time.thread_time)
        post_kept = _cpu_ms(lambda: pack_results(post(*kept), sizes), repeats, time.thread_time)
        # each frame alone, so the cost at a given instance count is a measurement, not a scaled average
        per_frame = [_cpu_ms(lambda i=i: pack_results(post(*kept, which=range(i, i + 1)), sizes[i : i + 1]),
                             repeats, time.thread_time) for i in range(len(frames))]  # fmt: skip
    n = len(frames)
    found = [len(r.scores) for r in kept_results]
    by_count: dict[str, list[float]] = {}
    for k, ms in zip(found, per_frame):
        by_count.setdefault(str(k), []).append(ms)
    figures = {
        "selection_frames": n, "selection_source": str(images) if images else "synthetic 1280x720",
        "queries": int(scores.shape[1]), "kept_rows": int(kept[1].shape[1]),
        "kept_per_frame": (scores.max(axis=2) > score_threshold).sum(axis=1).tolist(),
        "answer_mb_full": round((scores.nbytes + masks.nbytes) / 2**20, 2),
        "answer_mb_kept": round(sum(a.nbytes for a in kept) / 2**20, 2),
        "network_cpu_ms_per_frame_full": round(net_full / n, 1),
        "network_cpu_ms_per_frame_kept": round(net_kept / n, 1),
        "postprocess_cpu_ms_per_frame_full": round(post_full / n, 2),
        "postprocess_cpu_ms_per_frame_kept": round(post_kept / n, 2),
        "postprocess_instances_per_frame": round(float(np.mean(found)), 1),
        "postprocess_cpu_ms_by_instances": {k: round(float(np.mean(v)), 2)
                                            for k, v in sorted(by_count.items(), key=lambda kv: int(kv[0]))},
        "results_identical": same,
    }  # fmt: skip
    print(json.dumps(figures, indent=2))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
