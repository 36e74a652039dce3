"""Events for their subscribers: follow the topic, query and export the sink, draw an event's frame, the schemas."""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from pipeline.cli.common import app_settings
from pipeline.errors import ConfigError
from pipeline.messages import Event
from pipeline.subscriber import EventFilter, Start

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TIME_HELP = "ISO 8601 (2026-12-04T10:00:00Z), seconds since the epoch, or an age such as 15m, 2h, 1d (ago)"
SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


def parse_time(text: str, what: str) -> float:
    """A time from the command line: ISO 8601 (UTC unless it says), epoch seconds, or an age (``15m``)."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    if t and t[-1] in UNITS and t[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(t[:-1]) * UNITS[t[-1]]
    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a time ({TIME_HELP})") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())


def event_filter(args: argparse.Namespace) -> EventFilter:
    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    try:
        return EventFilter(types=_split(args.type), cameras=_split(args.camera), vehicles=_split(args.vehicle),
                           zones=_split(args.zone), since=since, until=until)  # fmt: skip
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'filter'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid filter: {problems}") from None


def start_of(text: str) -> Start:
    """``--from``: committed, earliest, latest, a time, or offsets ``PARTITION:OFFSET,...``."""
    if text in ("committed", "earliest", "latest"):
        return text  # type: ignore[return-value]
    if ":" in text and all(part.count(":") == 1 for part in text.split(",")):
        try:
            return {int(p): int(o) for p, o in (part.split(":") for part in text.split(","))}
        except ValueError:
            pass  # an ISO time has colons too
    return parse_time(text, "--from")


def _when(t: float) -> str:
    """A capture time as UTC; times before 2001 are seconds since the stream began (simulated cameras, files)."""
    if t < 1e9:
        return f"{t:.3f}s"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def line_of(e: Event) -> str:
    """One readable line per event."""
    when = _when(e.frame_time)
    about = " ".join(v for v in (e.track_id, e.class_name, e.zone and f"zone={e.zone}", e.line and f"line={e.line}",
                                 e.direction) if v)  # fmt: skip
    details = " ".join(f"{k}={v}" for k, v in e.details.items())
    return f"{when:<9} {e.type:<15} {e.camera_id:<14} {about}  {details}".rstrip()


def _print(e: Event, as_json: bool) -> None:
    print(e.model_dump_json(exclude_none=False) if as_json else line_of(e), flush=True)


def _stores(args: argparse.Namespace) -> list[Path]:
    """The sink files: given with --store, or the consumer.sink of the settings (every member's)."""
    if args.store:
        paths = [Path(p) for p in args.store]
    else:
        sink = app_settings(args).consumer.sink
        if sink is None:
            raise ConfigError("no --store given and consumer.sink is not set")
        paths = [Path(p) for p in sorted(glob.glob(str(sink).replace("{member}", "*")))]
        if not paths:
            raise ConfigError(f"no sink files match {sink} (give --store FILE)")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"sink file not found: {', '.join(missing)}")
    return paths


def stored_events(paths: list[Path], where: EventFilter) -> Iterator[Event]:
    """The events of every sink file matching ``where``, each id once, by frame time (files read side by side)."""
    import heapq

    from consumers.sink import EventStore

    stores = [EventStore(p) for p in paths]
    try:
        seen: set[str] = set()
        for e in heapq.merge(*(s.select(where) for s in stores), key=lambda e: (e.frame_time, e.camera_id)):
            if e.event_id not in seen:
                seen.add(e.event_id)
                yield e
    finally:
        for s in stores:
            s.close()


def _subscriber(args: argparse.Namespace, where: EventFilter, start: Start):
    from pipeline.subscriber import EventSubscriber, SeenIds

    settings = app_settings(args)
    conn = settings.kafka.connection()
    seen = SeenIds(args.seen) if getattr(args, "seen", None) else None
    return EventSubscriber(conn, settings.kafka.events_topic, group_id=getattr(args, "group", None), filter=where,
                           start=start, seen=seen, client_id="sparseinst-events-cli")  # fmt: skip


def cmd_tail(args: argparse.Namespace) -> int:
    where = event_filter(args)
    start = start_of(args.start) if args.start else ("committed" if args.group else "latest")
    shown = 0
    with _subscriber(args, where, start) as sub:
        print(f"# following {sub.topic} from {args.start or start}; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            for e in sub.events(idle_s=args.idle_exit, to_end=args.to_end):
                _print(e, args.json)
                shown += 1
                if args.group and shown % 100 == 0:
                    sub.commit()
                if args.limit and shown >= args.limit:
                    break
        finally:
            sub.commit()
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(sub.skipped.items())) or "none"
            print(f"# {shown} events; skipped: {skipped}", file=sys.stderr, flush=True)
    return 0


def window_counts(events: Iterator[Event], window_s: float, by: tuple[str, ...]) -> list[dict]:
    """Events per tumbling window of ``window_s`` seconds and the fields ``by`` (zone, class_name, type, camera_id)."""
    counts: Counter[tuple] = Counter()
    for e in events:
        start = (e.frame_time // window_s) * window_s
        counts[(start, *(getattr(e, f) for f in by))] += 1
    order = sorted(counts, key=lambda k: tuple("" if v is None else v for v in k))
    return [{"window_start": k[0], **dict(zip(by, k[1:])), "events": counts[k]} for k in order]


COUNT_FIELDS = {"zone": "zone", "class": "class_name", "type": "type", "camera": "camera_id", "line": "line"}


def cmd_query(args: argparse.Namespace) -> int:
    where = event_filter(args)
    events = stored_events(_stores(args), where)
    if args.count_by:
        names = _split([args.count_by]) or ()
        unknown = [f for f in names if f not in COUNT_FIELDS]
        if unknown or args.window <= 0:
            raise ConfigError(f"--count-by {args.count_by!r} --window {args.window:g}: count by "
                              f"{', '.join(COUNT_FIELDS)}, over a window of more than 0 s")  # fmt: skip
        by = tuple(COUNT_FIELDS[f] for f in names)
        rows = window_counts(events, args.window, by)
        for row in rows:
            if args.json:
                print(json.dumps(row))
            else:
                fields = "  ".join(f"{f}={row[f]}" for f in by)
                print(f"{_when(row['window_start']):<9} {fields}  events={row['events']}")
        return 0
    shown = 0
    for e in events:
        _print(e, args.json)
        shown += 1
        if args.limit and shown >= args.limit:
            break
    print(f"# {shown} events", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.event_export import export_events, format_of

    fmt = format_of(args.out, args.format)
    where = event_filter(args)
    if args.from_topic:
        sub = _subscriber(args, where, "earliest")
        total = None
        events: Iterator[Event] = sub.events(to_end=True, idle_s=args.idle_exit)
        source = f"topic {sub.topic}"
    else:
        from consumers.sink import EventStore

        paths = _stores(args)
        sub, source = None, ", ".join(map(str, paths))
        total = 0
        for p in paths:
            store = EventStore(p)
            total += store.count(where)
            store.close()
        events = stored_events(paths, where)
    try:
        bar = tqdm(events, total=total, unit=" events", desc=f"export {args.out.name}", file=sys.stderr,
                   disable=args.quiet)  # fmt: skip
        n = export_events(bar, args.out, fmt)
    finally:
        if sub is not None:
            sub.close()
    print(f"wrote {n} events from {source} to {args.out} ({fmt})")
    return 0


def cmd_frame(args: argparse.Namespace) -> int:
    import cv2

    from pipeline.event_frames import render_event

    found = None
    for e in stored_events(_stores(args), EventFilter()):
        if e.event_id == args.event_id:
            found = e
            break
    if found is None:
        raise ConfigError(f"no event {args.event_id!r} in the sink")
    settings = app_settings(args)
    image = render_event(settings.kafka.connection(), settings.kafka.archive_topic, found)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), image[:, :, ::-1]):
        raise ConfigError(f"could not write {args.out} (use a .png or .jpg name)")
    print(f"{found.type} {found.track_id or ''} frame {found.mask.frame_index if found.mask else found.frame_index} "
          f"of {found.camera_id} -> {args.out}")  # fmt: skip
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from pipeline.wire_schemas import stale_schemas, write_schemas

    if args.check:
        stale = stale_schemas(args.out)
        if stale:
            raise ConfigError("schemas are not current (run 'sparseinst-pipeline events schemas'): " + "; ".join(stale))
        print(f"schemas in {args.out} are current")
        return 0
    for path in write_schemas(args.out):
        print(path)
    return 0


def _filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (repeat a flag or give a comma-separated list)")
    g.add_argument("--type", action="append", help="event types, e.g. proximity.alert,zone.entered")
    g.add_argument("--camera", action="append", help="camera ids or shell patterns (veh-1/*)")
    g.add_argument("--vehicle", action="append", help="vehicle ids")
    g.add_argument("--zone", action="append", help="zone names")
    g.add_argument("--since", help=f"frame time from ({TIME_HELP})")
    g.add_argument("--until", help="frame time before (same forms)")


def _settings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings YAML (kafka.bootstrap, kafka.security, topics, "
                   "consumer.sink); unset: the environment and the stack 'up' started")  # fmt: skip


def register(sub: argparse._SubParsersAction, archs: list[str]) -> None:
    ev = sub.add_parser("events", help="subscribe to, query and export events; the wire schemas")
    esub = ev.add_subparsers(dest="events_command", required=True)

    t = esub.add_parser("tail", help="follow the events topic (read_committed), filtered, each event id once")
    _settings(t)
    _filters(t)
    t.add_argument("--from", dest="start", help="committed (with --group), earliest, latest, a time, or offsets "
                   "PARTITION:OFFSET,... (default: the group's offsets with --group, else latest)")  # fmt: skip
    t.add_argument("--group", help="consumer group: resume where it left off (offsets committed as it prints)")
    t.add_argument("--seen", type=Path, help="SQLite file of the event ids printed: none is printed twice, even "
                   "across restarts and replays")  # fmt: skip
    t.add_argument("--json", action="store_true", help="JSON lines (the event schema) instead of readable lines")
    t.add_argument("--idle-exit", type=float, help="stop after this many seconds without a record")
    t.add_argument("--to-end", action="store_true", help="stop at the end the topic had when reading began")
    t.add_argument("--limit", type=int, help="stop after this many events")
    t.set_defaults(func=cmd_tail)

    q = esub.add_parser("query", help="events in the sink (the consumers' SQLite files), or counts per window")
    _settings(q)
    q.add_argument("--store", action="append", help="sink file (repeat for several members; default: "
                   "consumer.sink of the settings, every member's)")  # fmt: skip
    _filters(q)
    q.add_argument("--count-by", help="count events per window and these fields: zone, class, type, camera, line")
    q.add_argument("--window", type=float, default=60.0, help="window of --count-by, seconds (default 60)")
    q.add_argument("--json", action="store_true", help="JSON lines")
    q.add_argument("--limit", type=int, help="at most this many events")
    q.set_defaults(func=cmd_query)

    x = esub.add_parser("export", help="events of a time range to Parquet or CSV (details as columns)")
    _settings(x)
    x.add_argument("--out", type=Path, required=True, help="file to write (.parquet or .csv)")
    x.add_argument("--format", choices=("parquet", "csv"), help="default: from the file name")
    x.add_argument("--store", action="append", help="sink file(s) to export from (default: consumer.sink)")
    x.add_argument("--from-topic", action="store_true", help="read the events topic instead of the sink")
    x.add_argument("--idle-exit", type=float, default=60.0, help="--from-topic: give up after this many seconds "
                   "without a record before the end")  # fmt: skip
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    _filters(x)
    x.set_defaults(func=cmd_export)

    f = esub.add_parser("frame", help="an event's frame from the frame archive with its track's mask drawn")
    _settings(f)
    f.add_argument("event_id")
    f.add_argument("--out", type=Path, required=True, help="image to write (.png or .jpg)")
    f.add_argument("--store", action="append", help="sink file(s) holding the event (default: consumer.sink)")
    f.set_defaults(func=cmd_frame)

    s = esub.add_parser("schemas", help="write the JSON Schema files of the wire types (or --check them)")
    s.add_argument("--out", type=Path, default=SCHEMAS_DIR, help=f"folder (default {SCHEMAS_DIR})")
    s.add_argument("--check", action="store_true", help="fail when the files differ from the models")
    s.set_defaults(func=cmd_schemas)
