"""Command line: ``sparseinst-pipeline`` (or ``python -m pipeline``).

ONNX Runtime, TensorRT and the data tools are imported inside the commands that use them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.logs import configure as configure_logging

WEIGHTS_HELP = "checkpoint file, or a shipped model's name (default: the shipped default model)"
DEFAULT_PROFILES = [(384, 640), (640, 640)]  # serving input sizes: 16:9 frames padded, and square


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 384x640, got {text!r}") from None
    return h, w


# ---------------------------------------------------------------------------------------- model


def cmd_import_official(args: argparse.Namespace) -> int:
    from pipeline.model import build_model, load_official_checkpoint, save_checkpoint

    model = load_official_checkpoint(build_model(args.arch), args.checkpoint)
    out = save_checkpoint(model, args.out, source=str(args.checkpoint), input_size={"min_size": 640, "max_size": 853})
    print(f"imported {args.checkpoint} as {args.arch}: every key matched; wrote {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.model.train import load_train_config, train

    cfg = load_train_config(args.config, steps=args.steps, out_dir=args.out_dir)
    final = train(cfg)
    print(f"wrote {final}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.data.boxes import score_boxes
    from pipeline.data.coco import iter_coco_images, synthetic_coco
    from pipeline.data.evaluate import predict_coco, score_coco
    from pipeline.model.shipped import load_predictor

    predictor = load_predictor(args.weights, args.arch, **_size_overrides(args))
    if args.coco_json:
        if not args.images_dir:
            raise PipelineError("--coco-json needs --images-dir")
        gt = json.loads(Path(args.coco_json).read_text())
        images = iter_coco_images(args.coco_json, args.images_dir)
    else:
        gt, pixels = synthetic_coco(args.synthetic_seed, args.num_images)
        images = zip(gt["images"], pixels)

    def predict(image):
        inst = predictor(image)
        return inst.scores, inst.classes, inst.masks

    results = predict_coco(gt, images, predict)
    figures: dict[str, object] = {}
    has_masks = all("segmentation" in a for a in gt["annotations"])
    if has_masks:  # box-only annotations (hand-drawn on real frames) get the box figures alone
        masks = score_coco(gt, results, len(gt["images"]))
        print(f"{'class':<16} {'AP':>7}")
        for name, ap in masks.per_class.items():
            print(f"{name:<16} {ap:>7.4f}")
        print(f"APs={masks.ap_small:.4f} APm={masks.ap_medium:.4f} APl={masks.ap_large:.4f} (COCO size ranges)")
        figures.update(masks.__dict__)
    print(f"images={len(gt['images'])} predictions={len(results)}")
    print(f"boxes at IoU 0.5, score >= {args.box_score_threshold}:")
    print(f"{'group':<8} {'boxes':>6} {'found':>6} {'detections':>11} {'false':>6} {'recall':>7} {'precision':>9}")
    for s in score_boxes(gt, results, score_threshold=args.box_score_threshold).values():
        print(f"{s.group:<8} {s.boxes:>6} {s.found:>6} {s.detections:>11} {s.false_alarms:>6} "
              f"{s.recall:>7.3f} {s.precision:>9.3f}")  # fmt: skip
        figures[f"{s.group}_box_recall"] = s.recall
        figures[f"{s.group}_box_precision"] = s.precision
    figures["box_score_threshold"] = args.box_score_threshold
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if has_masks:
        print(masks.summary_line())
    return 0


def _size_overrides(args: argparse.Namespace) -> dict[str, int]:
    return {k: v for k, v in (("min_size", args.min_size), ("max_size", args.max_size)) if v}


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from pipeline.model.checkpoint import load_model
    from pipeline.model.export import export_onnx
    from pipeline.model.shipped import resolve_weights

    model = load_model(resolve_weights(args.weights), args.arch)
    out = Path(args.out)
    sizes = args.size or DEFAULT_PROFILES
    for h, w in sizes:
        path = out if out.suffix == ".onnx" and len(sizes) == 1 else out / f"{model.info.arch}_{h}x{w}.onnx"
        report = export_onnx(model, path, height=h, width=w)
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in report.max_abs_diff.items())
        print(f"wrote {report.path} ({h}x{w}, dynamic batch); ONNX Runtime vs PyTorch max |diff|: {diffs}")
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    from pipeline.model.engine import build_engine

    report = build_engine(
        args.onnx,
        args.out,
        fp16=not args.fp32,
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        workspace_gib=args.workspace_gib,
        timing_cache=args.timing_cache,
    )
    print(f"wrote {report.plan} ({report.precision}, batch {report.min_batch}..{report.max_batch}, "
          f"input {report.input_shape}, {report.fp32_layers} layers pinned to FP32)")  # fmt: skip
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import cv2

    from pipeline.data.classes import class_name
    from pipeline.model.shipped import load_predictor
    from pipeline.overlay import draw_instances

    predictor = load_predictor(args.weights, args.arch, **_size_overrides(args))
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"skipped {path}: not a readable image", file=sys.stderr)
            continue
        inst = predictor(bgr[:, :, ::-1].copy())
        keep = inst.scores >= args.score_threshold
        over = draw_instances(bgr[:, :, ::-1], inst.masks[keep], inst.classes[keep], inst.scores[keep])
        target = args.out / (Path(path).stem + "_pred.jpg")
        cv2.imwrite(str(target), over[:, :, ::-1])
        found = ", ".join(f"{class_name(int(c))} {s:.2f}" for c, s in zip(inst.classes[keep], inst.scores[keep]))
        print(f"{path}: {int(keep.sum())} instances [{found}] -> {target}")
    return 0


# ---------------------------------------------------------------------------------------- data


def cmd_export_coco(args: argparse.Namespace) -> int:
    from pipeline.data.coco import write_synthetic_coco

    path = write_synthetic_coco(args.out, args.seed, args.num_images)
    print(f"wrote {args.num_images} images to {args.out / 'images'} and their annotations to {path}")
    return 0


# ---------------------------------------------------------------------------------------- bench / demo


def cmd_bench_model(args: argparse.Namespace) -> int:
    from pipeline.bench.model import bench_model

    h, w = args.size
    bench_model(args.arch, height=h, width=w, repeats=args.repeats, threads=args.threads, json_path=args.json)
    return 0


def cmd_bench_serving(args: argparse.Namespace) -> int:
    from pipeline.bench.serving import bench_serving

    bench_serving(requests=args.requests, threads=args.threads, in_flight=args.in_flight, weights=args.weights,
                  json_path=args.json)  # fmt: skip
    return 0


def cmd_bench_consumer(args: argparse.Namespace) -> int:
    from pipeline.bench.streaming import bench_consumer

    bench_consumer(messages=args.messages, width=args.width, height=args.height, instances=args.instances,
                   json_path=args.json)  # fmt: skip
    return 0


def cmd_bench_all(args: argparse.Namespace) -> int:
    from pipeline.bench.all import bench_all

    bench_all(model_arch=args.arch, json_path=args.json)
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from pipeline.bench.streaming import bench_pipeline

    bench_pipeline(cameras=args.cameras, seconds=args.seconds, batch=args.batch, in_flight=args.in_flight,
                   paced_seconds=args.paced_seconds, json_path=args.json)  # fmt: skip
    return 0


# ---------------------------------------------------------------------------------------- serving


def cmd_repo_build(args: argparse.Namespace) -> int:
    from pipeline.serving.repository import RepositoryOptions, build_repository

    options = RepositoryOptions(score_threshold=args.score_threshold, max_batch=args.max_batch,
                                cpu_threads=args.threads)  # fmt: skip
    out = build_repository(args.out, args.target, weights=args.weights, arch=args.arch, options=options)
    print(f"wrote the {args.target} model repository to {out}")
    if args.target == "gpu":
        print("on the GPU host, add the engine and the DALI pipeline:\n"
              f"  sparseinst-pipeline model build-engine --onnx {out}/sparseinst/1/model.onnx "
              f"--out {out}/sparseinst/1/model.plan\n"
              f"  python -m dali.serialize --params {out}/preprocess/1/preprocess.json "
              f"--out {out}/preprocess/1/model.dali")  # fmt: skip
    return 0


def _settings(args: argparse.Namespace):
    from pipeline.config import load_settings

    return load_settings(args.config)


def cmd_up(args: argparse.Namespace) -> int:
    from pipeline.local.stack import up

    info = up(_settings(args))
    print(json.dumps(info, indent=2))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from pipeline.local.stack import down

    stopped = down(_settings(args))
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.local.stack import status

    info = status(_settings(args))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for name, address in (("kafka", info["kafka_bootstrap"]), ("triton", info["triton_grpc"])):
            entry = info[name]
            state = "running" if entry["running"] else "not running"
            print(f"{name:<7} {entry['mode']:<9} {state:<12} {address or '-'}")
    return 0 if info["kafka"]["running"] and info["triton"]["running"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo.app import DemoOptions, run_demo

    opts = DemoOptions(cameras=args.cameras, seconds=args.seconds, seed=args.seed, sources=args.source or [],
                       rules=args.rules, out=args.out, summary_json=args.summary_json,
                       realtime=args.realtime)  # fmt: skip
    summary = run_demo(_settings(args), opts)
    print(json.dumps({k: v for k, v in summary.items() if k != "sources"}, indent=2))
    print(f"report: {summary['report']}")
    return 0


def _app_settings(args: argparse.Namespace):
    from pipeline.config import load_settings

    overrides: dict = {}
    if getattr(args, "metrics_port", None) is not None:
        overrides["metrics"] = {"port": args.metrics_port}
    if getattr(args, "member_id", None):
        overrides["consumer"] = {"member_id": args.member_id}
    return load_settings(args.config, **overrides)


def _announce_metrics(port: int) -> None:
    print(f"metrics: http://127.0.0.1:{port}/metrics" if port else "", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.apps.ingest import run_ingest

    summary = run_ingest(_app_settings(args), shard=args.shard, shards=args.shards, on_metrics=_announce_metrics)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from pipeline.apps.consume import run_consume

    print(json.dumps(run_consume(_app_settings(args), idle_exit_s=args.idle_exit, on_metrics=_announce_metrics),
                     indent=2))  # fmt: skip
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    from pipeline.kafka.connection import check_connection
    from pipeline.kafka.topics import ensure_topics

    settings = _settings(args)
    conn = settings.kafka.connection()
    check_connection(conn)
    found = ensure_topics(conn, settings.kafka.topic_names(), settings.kafka.topics, create=True)
    for name, partitions in sorted(found.items()):
        print(f"{name:<40} {partitions:>3} partitions")
    if args.grant:
        from kafka import KafkaAdminClient

        from pipeline.kafka.acls import grant_pipeline

        admin = KafkaAdminClient(**conn.client_args(), client_id="sparseinst-topics")
        try:
            print(f"granted {grant_pipeline(admin, args.grant)} ACLs to {', '.join(args.grant)}")
        finally:
            admin.close()
    return 0


def _rollout_context(args: argparse.Namespace, *, need_triton: bool = False):
    """Settings, the checked Kafka connection, the topic names and Triton's gRPC address (when needed)."""
    from pipeline.apps.common import addresses, kafka_ready

    settings = _app_settings(args)
    bootstrap, grpc = addresses(settings, need_triton=need_triton)
    return settings, kafka_ready(settings, bootstrap), settings.kafka.topic_names(), grpc


def _print_state(state) -> None:
    if state is None:
        print("no rollout recorded: live is version 1 (sparseinst_pipeline)")
        return
    print(f"rollout {state.rollout_id}: {state.phase}" + (f" ({state.decided_by}: {state.reason})"
                                                          if state.decided_by else ""))  # fmt: skip
    print(f"live      version {state.live_version} ({state.live_ensemble})")
    if state.candidate_version:
        print(f"candidate version {state.candidate_version} ({state.candidate_ensemble}): canary "
              f"{state.canary_share:.0%} of cameras, shadow {state.shadow_share:.0%} of frames")  # fmt: skip
    summary = state.judgement.summary()
    if not summary["frames"] and not summary["candidate_errors"]:
        print("  nothing judged yet (the controller judges shadowed frames as ingest sends them)")
        return
    for key, value in summary.items():
        print(f"  {key:<26} {value}")


def cmd_rollout_start(args: argparse.Namespace) -> int:
    from pipeline.local.stack import status
    from pipeline.rollout.ops import start_rollout
    from pipeline.rollout.state import RolloutPolicy

    settings, conn, topics, _ = _rollout_context(args)
    http = settings.triton.http_url or status(settings)["triton_http"]
    if not http:
        raise PipelineError("no Triton HTTP address: set triton.http_url (model control) or start 'up'")
    policy = RolloutPolicy(min_frames=args.min_frames, min_agreement=args.min_agreement,
                           max_latency_ratio=args.max_latency_ratio, error_budget=args.error_budget)  # fmt: skip
    state = start_rollout(conn, topics, repository=args.repository or settings.local.repository, triton_http=http,
                          weights=args.weights, onnx=args.onnx, plan=args.plan, canary_share=args.canary,
                          shadow_share=args.shadow, policy=policy, control_key=settings.triton.key())  # fmt: skip
    _print_state(state)
    return 0


def cmd_rollout_status(args: argparse.Namespace) -> int:
    from pipeline.rollout.state import RolloutStore

    _, conn, topics, _ = _rollout_context(args)
    state = RolloutStore(conn, topics.rollout_state).load()
    if args.json:
        print(state.model_dump_json(indent=2) if state else "null")
    else:
        _print_state(state)
    return 0


def cmd_rollout_decide(args: argparse.Namespace) -> int:
    from pipeline.rollout.ops import decide_by_hand

    _, conn, topics, _ = _rollout_context(args)
    _print_state(decide_by_hand(conn, topics, args.rollout_command, args.reason or ""))
    return 0


def cmd_rollout_controller(args: argparse.Namespace) -> int:
    from pipeline.apps.common import metrics_endpoint, on_sigterm
    from pipeline.metrics import rollout_collector
    from pipeline.rollout.controller import RolloutController

    settings, conn, topics, _ = _rollout_context(args)
    controller = RolloutController(conn, topics)
    try:
        with on_sigterm(controller.stop), metrics_endpoint(settings, lambda: rollout_collector(controller)) as port:
            if port is not None:
                _announce_metrics(port)
            state = controller.run(until_decided=args.until_decided)
    finally:
        controller.close()
    _print_state(state)
    return 0


def _time_ms(text: str | None) -> int | None:
    """ISO time or a span back from now (``-30m``, ``-2h``, ``-1d``) -> epoch milliseconds."""
    import re
    import time
    from datetime import datetime

    if not text:
        return None
    back = re.fullmatch(r"-(\d+(?:\.\d+)?)([smhd])", text)
    if back:
        seconds = float(back.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[back.group(2)]
        return int((time.time() - seconds) * 1000)
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise PipelineError(f"not a time: {text!r} (ISO 8601, or -30m / -2h / -1d)") from None


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.apps.consume import rules_of
    from pipeline.apps.replay import run_replay
    from pipeline.rollout.archive import read_archive

    settings, conn, topics, grpc = _rollout_context(args, need_triton=True)
    assert grpc is not None
    frames = read_archive(conn, topics.archive, since_ms=_time_ms(args.since), until_ms=_time_ms(args.until),
                          cameras=set(args.camera) if args.camera else None)  # fmt: skip
    result = run_replay(conn, topics, frames, grpc_url=grpc, version=args.version, tag=args.tag or f"v{args.version}",
                        rules=rules_of(settings), out=args.out, baseline_topic=args.baseline_topic or topics.events,
                        max_batch=settings.ingest.max_batch)  # fmt: skip
    summary = {"frames": len(result.detections), "events": len(result.events), "refused": result.refused}
    if result.diff is not None:
        summary |= {k: v for k, v in result.diff.summary().items() if k != "by_type_and_camera"}
    print(json.dumps(summary, indent=2))
    if result.report:
        print(f"report: {result.report}")
    return 0


# ---------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from pipeline.architectures import ARCHITECTURES  # the names only: `run` and `consume` never import torch

    archs = sorted(ARCHITECTURES)
    p = argparse.ArgumentParser(prog="sparseinst-pipeline", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="build, import, train, evaluate and export SparseInst models")
    msub = model.add_subparsers(dest="model_command", required=True)

    imp = msub.add_parser("import-official", help="strictly load an official SparseInst checkpoint and re-save it")
    imp.add_argument("checkpoint", type=Path, help="official .pth ({'model': state_dict} or a bare state_dict)")
    imp.add_argument("--arch", choices=archs, required=True)
    imp.add_argument("--out", type=Path, required=True, help="output checkpoint (project format, records the arch)")
    imp.set_defaults(func=cmd_import_official)

    tr = msub.add_parser("train", help="train a model from a YAML/JSON training config")
    tr.add_argument("--config", type=Path, required=True, help="training config (see configs/)")
    tr.add_argument("--steps", type=int, help="override the config's number of steps")
    tr.add_argument("--out-dir", type=Path, help="override the config's output folder")
    tr.set_defaults(func=cmd_train)

    ev = msub.add_parser(
        "eval",
        help="mask AP and person/vehicle box recall and precision on a synthetic set or any COCO-format "
        "dataset (box-only annotations: box figures only)",
    )
    ev.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    ev.add_argument("--arch", choices=archs, help="architecture, for checkpoints that do not record it")
    src = ev.add_mutually_exclusive_group()
    src.add_argument("--synthetic-seed", type=int, default=2026, help="seed of a fresh synthetic set (default 2026)")
    src.add_argument("--coco-json", type=Path, help="COCO annotations json")
    ev.add_argument("--num-images", type=int, default=200, help="images in the synthetic set")
    ev.add_argument("--images-dir", type=Path, help="images folder for --coco-json")
    ev.add_argument("--min-size", type=int, help="override the input short side")
    ev.add_argument("--max-size", type=int, help="override the input long-side limit")
    ev.add_argument("--box-score-threshold", type=float, default=0.3,
                    help="score above which a detection counts for box recall and precision (default 0.3, "
                         "the serving default)")  # fmt: skip
    ev.add_argument("--json", type=Path, help="also write the figures as JSON")
    ev.set_defaults(func=cmd_eval)

    ex = msub.add_parser("export-onnx", help="export ONNX (dynamic batch, one fixed input size per file)")
    ex.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    ex.add_argument("--arch", choices=archs)
    ex.add_argument("--size", type=_size, action="append", help="HEIGHTxWIDTH, repeatable (default: 384x640, 640x640)")
    ex.add_argument("--out", type=Path, default=Path("build/onnx"), help="folder, or a .onnx path for one size")
    ex.set_defaults(func=cmd_export_onnx)

    be = msub.add_parser("build-engine", help="build a TensorRT plan from an ONNX file (needs a CUDA GPU)")
    be.add_argument("--onnx", type=Path, required=True)
    be.add_argument("--out", type=Path, required=True, help="output .plan")
    be.add_argument("--fp32", action="store_true", help="FP32 instead of FP16")
    be.add_argument("--min-batch", type=int, default=1)
    be.add_argument("--opt-batch", type=int, default=8)
    be.add_argument("--max-batch", type=int, default=32)
    be.add_argument("--workspace-gib", type=float, default=4.0)
    be.add_argument("--timing-cache", type=Path, help="timing cache file, read if present and updated")
    be.set_defaults(func=cmd_build_engine)

    pr = msub.add_parser("predict", help="run a model on image files and write overlays")
    pr.add_argument("images", type=Path, nargs="+")
    pr.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    pr.add_argument("--arch", choices=archs)
    pr.add_argument("--out", type=Path, default=Path("runs/predict"))
    pr.add_argument("--score-threshold", type=float, default=0.3)
    pr.add_argument("--min-size", type=int)
    pr.add_argument("--max-size", type=int)
    pr.set_defaults(func=cmd_predict)

    data = sub.add_parser("data", help="synthetic data sets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    xc = dsub.add_parser("export-coco", help="write a synthetic set as COCO json (RLE masks) plus JPEG images")
    xc.add_argument("--seed", type=int, required=True, help="data set seed (training used 1 and 3)")
    xc.add_argument("--num-images", type=int, default=100)
    xc.add_argument("--out", type=Path, required=True, help="output folder")
    xc.set_defaults(func=cmd_export_coco)

    bench = sub.add_parser("bench", help="benchmarks that print measured figures")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    bm = bsub.add_parser("model", help="ms per frame: PyTorch eager vs optimised vs ONNX Runtime, batch 1 and 8")
    bm.add_argument("--arch", choices=archs, default="r50_giam")
    bm.add_argument("--size", type=_size, default=(640, 640), help="HEIGHTxWIDTH (default 640x640)")
    bm.add_argument("--repeats", type=int, default=3)
    bm.add_argument("--threads", type=int, help="CPU threads (default: all)")
    bm.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    bm.set_defaults(func=cmd_bench_model)

    bs = bsub.add_parser("serving", help="fps and p50/p99 latency through the CPU ensemble vs ONNX Runtime alone")
    bs.add_argument("--requests", type=int, default=20, help="timed requests per batch size")
    bs.add_argument("--threads", type=int, default=2, help="threads for ONNX Runtime, in and out of the server")
    bs.add_argument("--in-flight", type=int, default=2, help="requests outstanding in the throughput run")
    bs.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    bs.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    bs.set_defaults(func=cmd_bench_serving)

    bc = bsub.add_parser("consumer", help="detection messages/s one event processor handles, vs reading them alone")
    bc.add_argument("--messages", type=int, default=3000)
    bc.add_argument("--width", type=int, default=1280, help="frame width of the messages' masks")
    bc.add_argument("--height", type=int, default=720)
    bc.add_argument("--instances", type=int, default=10, help="instances per message")
    bc.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    bc.set_defaults(func=cmd_bench_consumer)
    bp = bsub.add_parser("pipeline", help="end-to-end fps and frame-to-event latency vs the Triton model alone")
    bp.add_argument("--cameras", type=int, default=4)
    bp.add_argument("--seconds", type=float, default=10.0, help="length of the synthetic drive")
    bp.add_argument("--batch", type=int, default=8)
    bp.add_argument("--in-flight", type=int, default=2, help="ingest's requests outstanding to Triton")
    bp.add_argument("--paced-seconds", type=float, default=12.0, help="length of each paced run (50/75/90%%)")
    bp.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    bp.set_defaults(func=cmd_bench_pipeline)
    ba = bsub.add_parser("all", help="model, serving, consumer and pipeline in one run, figures merged, each "
                                     "next to its same-run baseline (about 10 minutes on 2 cores)")  # fmt: skip
    ba.add_argument("--arch", choices=archs, default="r50_giam", help="architecture of the model benchmark")
    ba.add_argument("--json", type=Path, help="write every figure as one JSON object")
    ba.set_defaults(func=cmd_bench_all)

    repo = sub.add_parser("repo", help="the Triton model repository")
    rsub = repo.add_subparsers(dest="repo_command", required=True)
    rb = rsub.add_parser("build", help="render the model repository for the cpu or gpu profile from a checkpoint")
    rb.add_argument("--target", choices=("cpu", "gpu"), required=True)
    rb.add_argument("--out", type=Path, required=True, help="repository folder (its four models are replaced)")
    rb.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    rb.add_argument("--arch", choices=archs)
    rb.add_argument("--score-threshold", type=float, default=0.3, help="instances at or below are dropped")
    rb.add_argument("--max-batch", type=int, default=32)
    rb.add_argument("--threads", type=int, default=2, help="threads per CPU model instance")
    rb.set_defaults(func=cmd_repo_build)

    for name, func, text in (
        ("up", cmd_up, "start the embedded Kafka and Triton in the background (skips external ones)"),
        ("down", cmd_down, "stop what 'up' started"),
        ("status", cmd_status, "addresses and liveness of Kafka and Triton (exit 1 if one is down)"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--config", type=Path, help="settings YAML (kafka.bootstrap, triton.grpc_url, local.*)")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="machine-readable: kafka_bootstrap, triton_http, ...")
        sp.set_defaults(func=func)

    rn = sub.add_parser("run", help="stream the configured cameras through Triton to Kafka (ingest)")
    rn.add_argument("--config", type=Path, required=True, help="settings YAML with 'cameras'")
    rn.add_argument("--shard", type=int, default=0, help="this process's shard: cameras i with i %% shards == shard")
    rn.add_argument("--shards", type=int, default=1)
    rn.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (0: a free one)")
    rn.set_defaults(func=cmd_run)

    co = sub.add_parser("consume", help="one member of the event-processor group: events exactly once, and its "
                        "SQLite sink")  # fmt: skip
    co.add_argument("--config", type=Path, required=True, help="settings YAML ('consumer.rules', 'consumer.sink')")
    co.add_argument("--member-id", help="this member's stable name (default: POD_NAME or the host name); every "
                    "member of a group needs its own")  # fmt: skip
    co.add_argument("--idle-exit", type=float, help="stop after this many seconds without messages")
    co.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (0: a free one)")
    co.set_defaults(func=cmd_consume)

    tp = sub.add_parser("topics", help="the Kafka topics the applications use")
    tsub = tp.add_subparsers(dest="topics_command", required=True)
    tc = tsub.add_parser("create", help="create missing topics with kafka.topics' layout and check existing ones")
    tc.add_argument("--config", type=Path, help="settings YAML (kafka.bootstrap, kafka.topics, kafka.security)")
    tc.add_argument("--grant", nargs="+", metavar="USER",
                    help="also grant these users the pipeline's ACLs (as a user who may alter ACLs)")  # fmt: skip
    tc.set_defaults(func=cmd_topics_create)

    ro = sub.add_parser("rollout", help="model version rollouts: canary and shadow traffic judged on the masks")
    rosub = ro.add_subparsers(dest="rollout_command", required=True)
    rs = rosub.add_parser("start", help="stage a candidate as the next version, load it beside live, start routing")
    rs.add_argument("--weights", type=Path, help="the candidate's checkpoint (exported to ONNX here)")
    rs.add_argument("--onnx", type=Path, help="or the candidate's ONNX file")
    rs.add_argument("--plan", type=Path, help="its TensorRT plan (GPU repositories)")
    rs.add_argument("--repository", type=Path, help="the model repository Triton serves (default local.repository)")
    rs.add_argument("--canary", type=float, default=0.1, help="share of cameras the candidate serves (sticky)")
    rs.add_argument("--shadow", type=float, default=0.2, help="share of live frames also sent to the candidate")
    rs.add_argument("--min-frames", type=int, default=200, help="shadow frames judged before a promotion")
    rs.add_argument("--min-agreement", type=float, default=0.9, help="instances matched with the same class")
    rs.add_argument("--max-latency-ratio", type=float, default=1.5, help="candidate p99 / live p99 allowed")
    rs.add_argument("--error-budget", type=int, default=0, help="candidate errors tolerated")
    rs.set_defaults(func=cmd_rollout_start)
    rst = rosub.add_parser("status", help="the current rollout: phase, versions, shares and the judgement so far")
    rst.add_argument("--json", action="store_true")
    rst.set_defaults(func=cmd_rollout_status)
    for action, text in (("promote", "make the candidate live now"), ("rollback", "send all traffic to live now")):
        rd = rosub.add_parser(action, help=text)
        rd.add_argument("--reason", help="recorded in the rollout state")
        rd.set_defaults(func=cmd_rollout_decide)
    rc = rosub.add_parser("controller", help="judge shadow results and promote or roll back by the policy "
                          "(one per cluster; resumes after a restart)")  # fmt: skip
    rc.add_argument("--until-decided", action="store_true", help="exit when no rollout is running")
    rc.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (0: a free one)")
    rc.set_defaults(func=cmd_rollout_controller)
    for sp in rosub.choices.values():
        sp.add_argument("--config", type=Path, help="settings YAML (kafka.*, triton.*, local.repository)")

    rp = sub.add_parser("replay", help="archived frames through a chosen model version into separate topics, "
                        "and a diff of the events against live")  # fmt: skip
    rp.add_argument("--config", type=Path, help="settings YAML (kafka.*, triton.*, consumer.rules)")
    rp.add_argument("--version", type=int, required=True, help="the sparseinst version to replay with")
    rp.add_argument("--tag", help="topic suffix: <detections>.<tag>, <events>.<tag> (default v<version>)")
    rp.add_argument("--since", help="archive time range start: ISO 8601 or -30m, -2h, -1d (default: all)")
    rp.add_argument("--until", help="archive time range end (default: now)")
    rp.add_argument("--camera", action="append", help="only these cameras (repeatable)")
    rp.add_argument("--baseline-topic", help="events to compare with (default: the live events topic)")
    rp.add_argument("--out", type=Path, default=Path("runs/replay"), help="where diff.json and diff.html go")
    rp.set_defaults(func=cmd_replay)

    demo = sub.add_parser("demo", help="everything on one machine: embedded Kafka and Triton, synthetic or given "
                          "cameras, events, an HTML report")  # fmt: skip
    demo.add_argument("--cameras", type=int, default=4, metavar="N", help="synthetic cameras (4 per vehicle)")
    demo.add_argument("--seconds", type=float, default=10.0, help="length of the synthetic drive")
    demo.add_argument("--seed", type=int, default=0, help="synthetic traffic seed (vehicle k uses seed + k)")
    demo.add_argument("--source", action="append", metavar="PATH", help="video file, stream URL or JPEG folder "
                      "(repeatable) instead of synthetic cameras")  # fmt: skip
    demo.add_argument("--rules", type=Path, help="zones/lines YAML (default configs/demo_rules.yaml)")
    demo.add_argument("--realtime", action="store_true", help="pace synthetic cameras in real time (drops if behind)")
    demo.add_argument("--config", type=Path, help="settings YAML (external Kafka/Triton, ingest tuning)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--summary-json", type=Path)
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
