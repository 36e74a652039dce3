"""A loopback RTSP server publishing video files as live cameras (GStreamer's RTSP server).

Run by the system Python, which has GStreamer's bindings (Debian: ``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-good``/``-bad``); it imports nothing of the
project. Each ``--mount NAME=FILE`` serves ``rtsp://HOST:PORT/NAME``; every client connection
plays the file from its start, as packets (no transcoding), and the session ends with the file.

    /usr/bin/python3 pipeline/local/rtsp_server.py --port 8554 --mount cam0=clip.mp4
"""

from __future__ import annotations

import argparse
import sys

# container demuxer and RTP payloader per file suffix and codec; the encoded stream is sent as it is
DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".mkv": "matroskademux", ".webm": "matroskademux"}
PAYLOADERS = {"h264": "h264parse ! rtph264pay config-interval=-1", "h265": "h265parse ! rtph265pay config-interval=-1",
              "vp8": "rtpvp8pay", "vp9": "rtpvp9pay"}  # fmt: skip


def launch_line(path: str, codec: str) -> str:
    suffix = path[path.rfind(".") :].lower()
    if suffix not in DEMUXERS:
        raise SystemExit(f"{path}: unsupported container {suffix!r} (supported: {sorted(DEMUXERS)})")
    if codec not in PAYLOADERS:
        raise SystemExit(f"{path}: unsupported codec {codec!r} (supported: {sorted(PAYLOADERS)})")
    return f'( filesrc location="{path}" ! {DEMUXERS[suffix]} ! {PAYLOADERS[codec]} name=pay0 pt=96 )'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", action="append", required=True, metavar="NAME=FILE[:CODEC]",
                        help="serve FILE at /NAME; CODEC h264 (default), h265, vp8 or vp9")  # fmt: skip
    args = parser.parse_args(argv)

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.mount:
        name, _, rest = spec.partition("=")
        head, _, tail = rest.rpartition(":")
        path, codec = (head, tail) if head and tail in PAYLOADERS else (rest, "h264")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(path, codec))
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"ready rtsp://{args.host}:{args.port}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
