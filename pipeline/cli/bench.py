"""Benchmarks that print measured figures (each beside its baseline from the same run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import WEIGHTS_HELP, size_arg


def cmd_bench_model(args: argparse.Namespace) -> int:
    from pipeline.bench.model import bench_model

    h, w = args.size
    bench_model(args.arch, height=h, width=w, repeats=args.repeats, threads=args.threads, json_path=args.json)
    return 0


def cmd_bench_serving(args: argparse.Namespace) -> int:
    from pipeline.bench.serving import bench_serving

    if args.source == "video":
        from pipeline.bench.video import bench_video_serving

        bench_video_serving(repeats=max(1, min(args.requests, 5)), json_path=args.json)
        return 0

    bench_serving(requests=args.requests, threads=args.threads, in_flight=args.in_flight, weights=args.weights,
                  json_path=args.json)  # fmt: skip
    return 0


def cmd_bench_consumer(args: argparse.Namespace) -> int:
    from pipeline.bench.streaming import bench_consumer

    bench_consumer(messages=args.messages, width=args.width, height=args.height, instances=args.instances,
                   json_path=args.json)  # fmt: skip
    return 0


def _counts(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts such as 10 or 1,10,50,100, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"instance counts must be 1 or more, got {text!r}")
    return counts


def cmd_bench_all(args: argparse.Namespace) -> int:
    from pipeline.bench.all import bench_all

    bench_all(model_arch=args.arch, json_path=args.json)
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from pipeline.bench.streaming import bench_pipeline

    if args.source == "video":
        from pipeline.bench.video import bench_video_pipeline

        bench_video_pipeline(cameras=min(args.cameras, 4), seconds=args.seconds, batch=args.batch,
                             in_flight=args.in_flight, json_path=args.json)  # fmt: skip
        return 0

    bench_pipeline(cameras=args.cameras, seconds=args.seconds, batch=args.batch, in_flight=args.in_flight,
                   paced_seconds=args.paced_seconds, json_path=args.json)  # fmt: skip
    return 0


def cmd_bench_selection(args: argparse.Namespace) -> int:
    from pipeline.bench.selection import bench_selection

    bench_selection(images=args.images, batch=args.batch, score_threshold=args.score_threshold, json_path=args.json)
    return 0


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from pipeline.bench.ingest import bench_ingest

    bench_ingest(clip=args.clip, source=args.source, seconds=args.seconds, json_path=args.json)
    return 0


def register(sub: argparse._SubParsersAction, archs: list[str]) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print measured figures")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    bm = bsub.add_parser("model", help="ms per frame: PyTorch eager vs optimised vs ONNX Runtime, batch 1 and 8")
    bm.add_argument("--arch", choices=archs, default="r50_giam")
    bm.add_argument("--size", type=size_arg, default=(640, 640), help="HEIGHTxWIDTH (default 640x640)")
    bm.add_argument("--repeats", type=int, default=3)
    bm.add_argument("--threads", type=int, help="CPU threads (default: all)")
    bm.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    bm.set_defaults(func=cmd_bench_model)

    bs = bsub.add_parser("serving", help="fps and p50/p99 latency through the CPU ensemble vs ONNX Runtime alone")
    bs.add_argument("--requests", type=int, default=20, help="timed requests per batch size")
    bs.add_argument("--threads", type=int, default=2, help="threads for ONNX Runtime, in and out of the server")
    bs.add_argument("--in-flight", type=int, default=2, help="requests outstanding in the throughput run")
    bs.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    bs.add_argument(
        "--source",
        choices=("images", "video"),
        default="images",
        help="video: one 32-frame H.264 segment at sparseinst_video against the same frames as JPEG "
        "batches of 8 at sparseinst_pipeline (ms per frame and per model); --requests caps at 5",
    )
    bs.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    bs.set_defaults(func=cmd_bench_serving)

    bc = bsub.add_parser("consumer", help="detection messages/s one event processor handles, vs reading them alone")
    bc.add_argument("--messages", type=int, default=3000)
    bc.add_argument("--width", type=int, default=1280, help="frame width of the messages' masks")
    bc.add_argument("--height", type=int, default=720)
    bc.add_argument("--instances", type=_counts, default=[10], help="instances per message; several as 1,10,50,100 "
                    "(one run and baseline each, on one broker)")  # fmt: skip
    bc.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    bc.set_defaults(func=cmd_bench_consumer)
    bp = bsub.add_parser("pipeline", help="end-to-end fps and frame-to-event latency vs the Triton model alone")
    bp.add_argument("--cameras", type=int, default=4)
    bp.add_argument("--seconds", type=float, default=10.0, help="length of the synthetic drive")
    bp.add_argument("--batch", type=int, default=8)
    bp.add_argument("--in-flight", type=int, default=2, help="ingest's requests outstanding to Triton")
    bp.add_argument(
        "--source",
        choices=("images", "video"),
        default="images",
        help="images: replayed JPEG frames; video: H.264 cameras, JPEG re-encoding in ingest against "
        "segments decoded in Triton, flat out and paced with 1 s segments (up to 4 cameras)",
    )
    bp.add_argument("--paced-seconds", type=float, default=12.0, help="length of each paced run (50/75/90%%)")
    bp.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    bp.set_defaults(func=cmd_bench_pipeline)
    bi = bsub.add_parser("ingest", help="ingest CPU and bytes per 1080p H.264 frame: decode + JPEG re-encode vs "
                                        "demuxed segments, same clip, same run")  # fmt: skip
    bi.add_argument("--source", type=Path, help="video to make the 1920x1080 clip from (default: the simulator)")
    bi.add_argument("--clip", type=Path, help="where the made clip is kept and reused (default: under runs/)")
    bi.add_argument("--seconds", type=float, default=12.0, help="length of the made clip (at least 10 s)")
    bi.add_argument("--json", type=Path, help="write the figures as a JSON object")
    bi.set_defaults(func=cmd_bench_ingest)
    bk = bsub.add_parser("selection", help="the network's answer and post-processing CPU: every query vs the kept "
                                           "instances only, same batch, results compared")  # fmt: skip
    bk.add_argument("--images", type=Path, help="folder of photos (default: synthetic 1280x720 street frames)")
    bk.add_argument("--batch", type=int, default=8)
    bk.add_argument("--score-threshold", type=float, default=0.3)
    bk.add_argument("--json", type=Path, help="write the figures as a JSON object")
    bk.set_defaults(func=cmd_bench_selection)
    ba = bsub.add_parser("all", help="model, serving, consumer and pipeline in one run, figures merged, each "
                                     "next to its same-run baseline (about 10 minutes on 2 cores)")  # fmt: skip
    ba.add_argument("--arch", choices=archs, default="r50_giam", help="architecture of the model benchmark")
    ba.add_argument("--json", type=Path, help="write every figure as one JSON object")
    ba.set_defaults(func=cmd_bench_all)
