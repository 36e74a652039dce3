"""What the command groups share: argument types, settings from ``--config``, the embedded services' addresses."""

from __future__ import annotations

import argparse
import sys

from pipeline.config import Settings, load_settings

WEIGHTS_HELP = "checkpoint file, or a shipped model's name (default: the shipped default model)"
DEFAULT_PROFILES = [(384, 640), (640, 640)]  # serving input sizes: 16:9 frames padded, and square


def size_arg(text: str) -> tuple[int, int]:
    """``HEIGHTxWIDTH`` as an argparse type."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 384x640, got {text!r}") from None
    return h, w


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def app_settings(args: argparse.Namespace) -> Settings:
    """The settings an app runs with: the file, the command's overrides, and the addresses of the embedded
    services that ``up`` started wherever none is configured (the apps themselves read settings only)."""
    from pipeline.local.stack import with_embedded_addresses

    overrides: dict = {}
    if getattr(args, "metrics_port", None) is not None:
        overrides["metrics"] = {"port": args.metrics_port}
    if getattr(args, "member_id", None):
        overrides["consumer"] = {"member_id": args.member_id}
    return with_embedded_addresses(load_settings(args.config, **overrides))


def announce_metrics(port: int) -> None:
    print(f"metrics: http://127.0.0.1:{port}/metrics" if port else "", file=sys.stderr, flush=True)
