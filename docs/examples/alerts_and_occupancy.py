"""A subscriber's first script: one vehicle's proximity alerts, then a zone's occupancy as a DataFrame and a plot.

    python docs/examples/alerts_and_occupancy.py --bootstrap 127.0.0.1:9092 --vehicle veh-1 \
        --camera veh-1/right --zone approach

Needs the package's core for the alerts, and the ``analysis`` extra (pandas, matplotlib) for the
table and the plot. Run it twice: the second run prints no alert again (its group's offsets and the
seen-ids file carry on from the first).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.event_export import event_row
from pipeline.subscriber import EventFilter, EventSubscriber, SeenIds


def print_alerts(bootstrap: str, topic: str, vehicle: str, seen_file: Path) -> int:
    """Follow the proximity alerts of one vehicle until the topic is quiet for 5 s; each alert once, ever."""
    wanted = EventFilter(types=["proximity.alert"], vehicles=[vehicle])
    n = 0
    with EventSubscriber(bootstrap, topic, group_id=f"alerts-{vehicle}", filter=wanted,
                         seen=SeenIds(seen_file)) as sub:  # fmt: skip
        for e in sub.events(idle_s=5):
            print(f"{e.frame_time:10.1f}  {e.camera_id:<12} {e.track_id:<16} {e.class_name:<8} "
                  f"near {e.details['target']} at {e.details['distance_px']} px")  # fmt: skip
            sub.commit()  # handled: not delivered again, even after a restart
            n += 1
    return n


def occupancy_table(bootstrap: str, topic: str, camera: str, zone: str):
    """A camera's zone, window by window: the peak number of tracks of each class (a pandas DataFrame)."""
    import pandas as pd

    wanted = EventFilter(types=["occupancy"], cameras=[camera], zones=[zone])
    with EventSubscriber(bootstrap, topic, start="earliest", filter=wanted) as sub:
        df = pd.DataFrame([event_row(e) for e in sub.events(to_end=True)])
    if df.empty:
        return df
    classes = sorted(c for c in df.columns if c.startswith("details.")
                     and c not in ("details.window_start", "details.window_s", "details.total"))  # fmt: skip
    table = df.set_index("details.window_start")[classes].fillna(0).astype(int)
    table.index.name = "window_start"
    return table.rename(columns=lambda c: c.removeprefix("details.")).sort_index()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", default="events")
    p.add_argument("--vehicle", default="veh-1")
    p.add_argument("--camera", default="veh-1/right")
    p.add_argument("--zone", default="approach")
    p.add_argument("--seen", type=Path, default=Path("runs/alerts-seen.sqlite"))
    p.add_argument("--plot", type=Path, default=Path("runs/occupancy.png"))
    args = p.parse_args()

    print(f"{print_alerts(args.bootstrap, args.topic, args.vehicle, args.seen)} new alerts")
    table = occupancy_table(args.bootstrap, args.topic, args.camera, args.zone)
    if not len(table.columns):
        print(f"no track in {args.camera} zone {args.zone} in {len(table.index)} windows")
    else:
        print(table.to_string())
        import matplotlib

        matplotlib.use("Agg")  # files, no display
        title = f"{args.camera} {args.zone}: peak tracks per window"
        ax = table.plot(kind="bar", stacked=True, figsize=(8, 3), title=title)
        ax.set_xlabel("window start (s)")
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        ax.figure.savefig(args.plot, bbox_inches="tight")
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
