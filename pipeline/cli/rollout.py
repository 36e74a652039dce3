"""Model version rollouts (start, status, promote, rollback, the controller) and replays of archived frames."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.cli.common import announce_metrics, app_settings
from pipeline.errors import PipelineError


def _rollout_context(args: argparse.Namespace, *, need_triton: bool = False):
    """Settings, the checked Kafka connection, the topic names and Triton's gRPC address (when needed)."""
    from pipeline.apps.common import addresses, kafka_ready

    settings = app_settings(args)
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
    from pipeline.rollout.ops import start_rollout
    from pipeline.rollout.state import RolloutPolicy

    settings, conn, topics, _ = _rollout_context(args)
    http = settings.triton.http_url
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
                announce_metrics(port)
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
    from pipeline.archive import read_archive

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


def register(sub: argparse._SubParsersAction, archs: list[str]) -> None:
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
