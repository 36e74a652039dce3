"""Streaming: ingest (run), the event processor (consume) and the topics they use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.cli.common import announce_metrics, app_settings, settings_of


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.apps.ingest import run_ingest

    summary = run_ingest(app_settings(args), shard=args.shard, shards=args.shards, on_metrics=announce_metrics)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from pipeline.apps.consume import run_consume

    print(json.dumps(run_consume(app_settings(args), idle_exit_s=args.idle_exit, on_metrics=announce_metrics),
                     indent=2))  # fmt: skip
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    from pipeline.kafka.connection import check_connection
    from pipeline.kafka.topics import ensure_topics

    settings = settings_of(args)
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


def register(sub: argparse._SubParsersAction, archs: list[str]) -> None:
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
