"""Video cameras as keyframe-aligned encoded segments: demuxed, never decoded.

A segment holds the packets of one group of pictures (a keyframe and what follows it up to the
next keyframe), remuxed in memory into a small container of its own (MP4 for H.264/H.265, WebM for
VP8/VP9/AV1, Matroska for MJPEG), so the server's decoder parses it from memory with the codec
parameters inside. A group longer than ``max_frames`` (the network's batch limit) is sent as
several pieces: each piece repeats the group from its keyframe (the decoder needs it) and says
how many leading frames it only decodes (``skip``). Cameras should therefore keep their GOP at or
below ``max_frames``; segment length is also the floor of a live camera's frame-to-event latency.

Frame identity comes from the segment: ``first_index`` + position in presentation order, capture
time from the packet timestamps relative to the stream's first packet.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

log = logging.getLogger(__name__)

# The container a codec's segments travel in: one that carries its parameters and that both DALI's
# decoder and FFmpeg parse from a memory buffer.
CONTAINERS = {"h264": "mp4", "hevc": "mp4", "vp8": "webm", "vp9": "webm", "av1": "webm", "mjpeg": "matroska"}
DEFAULT_MAX_FRAMES = 32  # the network's batch limit (pipeline.serving.contract.MAX_BATCH)
DEFAULT_MAX_SECONDS = 1.0
INTRA_ONLY = {"mjpeg"}  # every frame a keyframe: frames are grouped up to the length limits instead


class UnsupportedVideo(ValueError):
    """A stream whose codec cannot travel as segments."""


@dataclass(frozen=True)
class Segment:
    """Encoded frames of one camera, self-contained: decodable without anything sent before."""

    data: bytes  # the container's bytes
    container: str  # FFmpeg format name: mp4, webm, matroska
    codec: str  # FFmpeg codec name: h264, hevc, vp9, vp8, av1, mjpeg
    first_index: int  # frame index (within the stream) of the first frame this segment answers for
    times: tuple[float, ...]  # capture time of each answered frame, seconds from the stream's start
    skip: int  # leading frames (in presentation order) to decode but not answer for
    width: int
    height: int

    @property
    def frames(self) -> int:
        """Frames this segment answers for."""
        return len(self.times)

    @property
    def decoded_frames(self) -> int:
        return self.skip + len(self.times)

    def describe(self) -> str:
        return (f"{self.codec} segment of {self.frames} frames from #{self.first_index} ({len(self.data)} bytes"
                f"{f', {self.skip} lead-in' if self.skip else ''})")  # fmt: skip


@dataclass(frozen=True)
class _Packet:
    data: bytes
    pts: int
    dts: int | None
    duration: int
    keyframe: bool


def _remux(packets: list[_Packet], template: object, container: str) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream_from_template(template)
        for p in packets:
            pkt = av.Packet(p.data)
            pkt.pts, pkt.dts, pkt.duration = p.pts, p.dts, p.duration
            pkt.is_keyframe = p.keyframe
            pkt.time_base = template.time_base  # type: ignore[attr-defined]
            pkt.stream = stream
            out.mux(pkt)
    return buf.getvalue()


def _closed_prefixes(packets: list[_Packet], max_frames: int) -> list[int]:
    """Cut points (packet counts) of one group so each piece answers for at most ``max_frames`` frames.

    A cut is only allowed where every packet before it is presented before every packet after it
    (always so without B-frames), so a piece's answered frames are a run in presentation order.
    """
    n = len(packets)
    if n <= max_frames:
        return [n]
    suffix_min = [0] * (n + 1)
    suffix_min[n] = 1 << 62
    for i in range(n - 1, -1, -1):
        suffix_min[i] = min(packets[i].pts, suffix_min[i + 1])
    allowed, running_max = [], -(1 << 62)
    for i, p in enumerate(packets):
        running_max = max(running_max, p.pts)
        if running_max < suffix_min[i + 1]:
            allowed.append(i + 1)
    cuts, last = [], 0
    for i, cut in enumerate(allowed):
        nxt = allowed[i + 1] if i + 1 < len(allowed) else None
        if nxt is None or nxt - last > max_frames:
            if cut - last > max_frames:  # no allowed cut inside the limit: B-frames across it
                raise UnsupportedVideo(f"cannot cut a group of {n} frames into pieces of at most {max_frames}")
            cuts.append(cut)
            last = cut
    return cuts


class Segmenter:
    """Turns one video stream's packets (in decode order) into :class:`Segment` objects."""

    def __init__(self, stream: object, *, max_frames: int = DEFAULT_MAX_FRAMES,
                 max_seconds: float = DEFAULT_MAX_SECONDS, first_index: int = 0) -> None:  # fmt: skip
        codec = stream.codec_context.name  # type: ignore[attr-defined]
        if codec not in CONTAINERS:
            raise UnsupportedVideo(f"codec {codec!r} cannot be sent as segments (supported: {sorted(CONTAINERS)})")
        self.stream, self.codec, self.container = stream, codec, CONTAINERS[codec]
        self.max_frames, self.max_seconds = max_frames, max_seconds
        self.width = int(stream.codec_context.width)  # type: ignore[attr-defined]
        self.height = int(stream.codec_context.height)  # type: ignore[attr-defined]
        self.time_base = Fraction(stream.time_base)  # type: ignore[attr-defined]
        self.next_index = first_index
        self.origin: int | None = None  # pts of the stream's first packet: capture time 0
        self._group: list[_Packet] = []
        self.skipped_before_keyframe = 0  # packets dropped because the stream did not start at a keyframe

    def push(self, packet: object) -> list[Segment]:
        """Add one demuxed packet; returns the segments it closed (at a keyframe)."""
        if packet.size == 0 or packet.pts is None:  # type: ignore[attr-defined]  # flush / untimed packets
            return []
        p = _Packet(bytes(packet), int(packet.pts), packet.dts, int(packet.duration or 0),  # type: ignore[attr-defined]
                    bool(packet.is_keyframe))  # type: ignore[attr-defined]  # fmt: skip
        out = []
        if p.keyframe and self._group and (self.codec not in INTRA_ONLY or self._full(p)):
            out = self._close()
        if not self._group and not p.keyframe:
            self.skipped_before_keyframe += 1  # joined mid-group: undecodable until the next keyframe
            return out
        if self.origin is None:
            self.origin = p.pts
        self._group.append(p)
        return out

    def _full(self, nxt: _Packet) -> bool:
        """An intra-only group has reached a length limit."""
        span = (nxt.pts - self._group[0].pts) * self.time_base
        return len(self._group) >= self.max_frames or span >= self.max_seconds

    def flush(self) -> list[Segment]:
        """Close the group in progress (end of file, stream lost)."""
        return self._close() if self._group else []

    def _close(self) -> list[Segment]:
        group, self._group = self._group, []
        assert self.origin is not None
        order = sorted(range(len(group)), key=lambda i: group[i].pts)
        times = [float((group[i].pts - self.origin) * self.time_base) for i in order]
        segments, start = [], 0
        for cut in _closed_prefixes(group, self.max_frames):
            data = _remux(group[:cut], self.stream, self.container)
            segments.append(Segment(data=data, container=self.container, codec=self.codec,
                                    first_index=self.next_index + start, times=tuple(times[start:cut]), skip=start,
                                    width=self.width, height=self.height))  # fmt: skip
            start = cut
        self.next_index += len(group)
        return segments


def open_video(uri: str, *, timeout_s: float = 10.0) -> object:
    """An opened PyAV container; streams over TCP for RTSP, with a socket timeout."""
    import av

    options = {"timeout": str(int(timeout_s * 1_000_000))} if "://" in uri else {}
    if uri.startswith("rtsp://"):
        options["rtsp_transport"] = "tcp"
    return av.open(uri, options=options, timeout=timeout_s)


def iter_segments(uri: str, *, max_frames: int = DEFAULT_MAX_FRAMES,
                  max_seconds: float = DEFAULT_MAX_SECONDS) -> Iterator[Segment]:  # fmt: skip
    """Every segment of a video file or stream, in order (no reconnection: see ``VideoSource``)."""
    with open_video(uri) as container:
        stream = container.streams.video[0]
        segmenter = Segmenter(stream, max_frames=max_frames, max_seconds=max_seconds)
        for packet in container.demux(stream):
            yield from segmenter.push(packet)
        yield from segmenter.flush()


def decode_segment(segment: Segment) -> list:
    """The answered frames of a segment as RGB arrays, decoded with FFmpeg (replay, reports, tests)."""
    import av

    with av.open(io.BytesIO(segment.data), format=segment.container) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames[segment.skip : segment.skip + segment.frames]
