"""The embedded services for one machine: up, down, status, and the demo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.cli.common import settings_of


def cmd_up(args: argparse.Namespace) -> int:
    from pipeline.local.stack import up

    print(up(settings_of(args)).model_dump_json(indent=2))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from pipeline.local.stack import down

    stopped = down(settings_of(args))
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.local.stack import status

    info = status(settings_of(args))
    if args.json:
        print(info.model_dump_json(indent=2))
    else:
        for name, entry, address in (("kafka", info.kafka, info.kafka_bootstrap),
                                     ("triton", info.triton, info.triton_grpc)):  # fmt: skip
            state = "running" if entry.running else "not running"
            print(f"{name:<7} {entry.mode:<9} {state:<12} {address or '-'}")
    return 0 if info.running else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo.app import DemoOptions, run_demo

    opts = DemoOptions(cameras=args.cameras, seconds=args.seconds, seed=args.seed, sources=args.source or [],
                       rules=args.rules, out=args.out, summary_json=args.summary_json,
                       realtime=args.realtime)  # fmt: skip
    summary = run_demo(settings_of(args), opts)
    print(json.dumps({k: v for k, v in summary.items() if k != "sources"}, indent=2))
    print(f"report: {summary['report']}")
    return 0


def register(sub: argparse._SubParsersAction, archs: list[str]) -> None:
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
    demo = sub.add_parser("demo", help="everything on one machine: embedded Kafka and Triton, synthetic or given "
                          "cameras, events, an HTML report")  # fmt: skip
    demo.add_argument("--cameras", type=int, default=4, metavar="N", help="synthetic cameras (4 per vehicle)")
    demo.add_argument("--seconds", type=float, default=10.0, help="length of the synthetic drive")
    demo.add_argument("--seed", type=int, default=0, help="synthetic traffic seed (vehicle k uses seed + k)")
    demo.add_argument("--source", action="append", metavar="PATH", help="video file, stream URL or JPEG folder "
                      "(repeatable) instead of synthetic cameras")  # fmt: skip
    demo.add_argument("--rules", type=Path, help="zones/lines YAML (default: the demo rules shipped in consumers/)")
    demo.add_argument("--realtime", action="store_true", help="pace synthetic cameras in real time (drops if behind)")
    demo.add_argument("--config", type=Path, help="settings YAML (external Kafka/Triton, ingest tuning)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--summary-json", type=Path)
    demo.set_defaults(func=cmd_demo)
