"""Command line: ``sparseinst-pipeline`` (or ``python -m pipeline``).

One module per command group registers its arguments next to its handlers. ONNX Runtime,
TensorRT, PyTorch and the data tools are imported inside the commands that use them, so ``run``
and ``consume`` start without them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import bench, dev, events, model, rollout, serve, stream
from pipeline.errors import PipelineError
from pipeline.logs import configure as configure_logging

GROUPS = (model, bench, serve, dev, stream, events, rollout)


def build_parser() -> argparse.ArgumentParser:
    from pipeline.architectures import ARCHITECTURES  # the names only: `run` and `consume` never import torch

    p = argparse.ArgumentParser(prog="sparseinst-pipeline", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub, sorted(ARCHITECTURES))
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


__all__ = ["build_parser", "main"]
