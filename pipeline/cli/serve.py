"""Serving: render the Triton model repository for the cpu or gpu profile."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import WEIGHTS_HELP


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


def register(sub: argparse._SubParsersAction, archs: list[str]) -> None:
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
