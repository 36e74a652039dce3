"""Events as table rows, and their export to Parquet or CSV.

One row per event: the event's own fields, its ``details`` flattened to ``details.<key>`` columns
(the union over the exported events: an occupancy window's classes become columns of their own) and
its mask reference (``mask.frame_index``, ``mask.counts``, ...). Parquet is written with pyarrow:
the Arrow project's own writer, typed columns, read as they are by pandas, Polars, DuckDB and Spark,
and a smaller install than DuckDB for a job that is only a write. CSV needs nothing beyond Python.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ConfigError
from pipeline.messages import Event

Format = Literal["parquet", "csv"]
FIELDS = ("event_id", "type", "camera_id", "vehicle_id", "stream_epoch", "frame_index", "frame_time", "track_id",
          "class_name", "zone", "line", "direction", "model_name", "model_version")  # fmt: skip


def event_row(e: Event) -> dict[str, Any]:
    row: dict[str, Any] = {f: getattr(e, f) for f in FIELDS}
    row |= {f"details.{k}": v for k, v in e.details.items()}
    if e.mask is not None:
        row |= {"mask.frame_index": e.mask.frame_index, "mask.height": e.mask.size[0], "mask.width": e.mask.size[1],
                "mask.counts": e.mask.counts, "mask.box": json.dumps(list(e.mask.box))}  # fmt: skip
    return row


def format_of(path: Path, given: str | None) -> Format:
    fmt = given or path.suffix.lstrip(".").lower()
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"export format {fmt!r}: use --format parquet or csv (or a .parquet / .csv file name)")
    return fmt  # type: ignore[return-value]


def export_events(events: Iterable[Event], path: Path, fmt: Format) -> int:
    """Write ``events`` to ``path``; returns how many. Columns: :func:`event_row` (a fixed order, details sorted)."""
    rows = [event_row(e) for e in events]
    extra = sorted({k for r in rows for k in r} - set(FIELDS), key=lambda k: (not k.startswith("details."), k))
    columns = [*FIELDS, *extra]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return len(rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install 'sparseinst-pipeline[subscribe]'") from None
    # a details key holds numbers for some events and text for others only across types: kept as text then
    data = {c: [r.get(c) for r in rows] for c in columns}
    arrays = {}
    for c, values in data.items():
        try:
            arrays[c] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
    pq.write_table(pa.table(arrays), path)
    return len(rows)
