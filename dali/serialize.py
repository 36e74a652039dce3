"""Serialize the preprocessing pipeline to ``model.dali`` for Triton's DALI backend.

    python -m dali.serialize --params model_repository/preprocess/1/preprocess.json \\
        --out model_repository/preprocess/1/model.dali [--device gpu]

A ``gpu`` pipeline (nvJPEG decoding) can only be created, and so serialized, where CUDA is
present: run this on the GPU host or in the deployment's build step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dali.preprocess import build_pipeline, load_params


def serialize(params_path: Path, out: Path, *, device: str = "gpu", batch_size: int | None = None) -> Path:
    import json

    params = load_params(params_path)
    batch = batch_size or int(json.loads(Path(params_path).read_text()).get("max_batch", 32))
    pipe = build_pipeline(device, params, batch_size=batch, num_threads=4, device_id=0 if device == "gpu" else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    pipe.serialize(filename=str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dali.serialize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, required=True, help="preprocess.json written by 'repo build'")
    parser.add_argument("--out", type=Path, required=True, help="where to write model.dali")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: max_batch from the params file")
    args = parser.parse_args(argv)
    try:
        path = serialize(args.params, args.out, device=args.device, batch_size=args.batch_size)
    except RuntimeError as exc:
        print(f"error: DALI could not build the {args.device} pipeline: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
