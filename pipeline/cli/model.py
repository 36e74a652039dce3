"""Models (import official checkpoints, train, evaluate, export ONNX, build TensorRT plans, predict) and
synthetic data sets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli.common import DEFAULT_PROFILES, WEIGHTS_HELP, size_arg
from pipeline.errors import PipelineError


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


def cmd_export_coco(args: argparse.Namespace) -> int:
    from pipeline.data.coco import write_synthetic_coco

    path = write_synthetic_coco(args.out, args.seed, args.num_images)
    print(f"wrote {args.num_images} images to {args.out / 'images'} and their annotations to {path}")
    return 0


def register(sub: argparse._SubParsersAction, archs: list[str]) -> None:
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
    ex.add_argument(
        "--size", type=size_arg, action="append", help="HEIGHTxWIDTH, repeatable (default: 384x640, 640x640)"
    )
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
