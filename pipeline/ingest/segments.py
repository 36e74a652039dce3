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
    pts: int | None  # None where the demuxer could not tell (RTP with B-frames: a group's first packets)
    dts: int | None
    duration: int
    keyframe: bool


def _filled(group: list[_Packet], step: int) -> list[_Packet]:
    """The group with missing timestamps inferred from their neighbours, ``step`` ticks per frame apart.

    A closed group shows its keyframe first, so a keyframe without pts is one step before the group's
    earliest known pts; decode timestamps rise by one step per packet, counted back from the first known.
    """
    known = [p.pts for p in group if p.pts is not None]
    pts: list[int] = []
    for i, p in enumerate(group):
        if p.pts is not None:
            pts.append(p.pts)
        elif i == 0:
            pts.append(min(known) - step if known else 0)
        else:
            pts.append(pts[-1] + step)
    first = next((i for i, p in enumerate(group) if p.dts is not None), None)
    dts: list[int | None] = []
    for i, p in enumerate(group):
        if p.dts is not None:
            dts.append(p.dts)
        elif first is None:
            dts.append(None)
        elif i < first:
            dts.append(group[first].dts - (first - i) * step)  # type: ignore[operator]
        else:
            dts.append(dts[-1] + step)  # type: ignore[operator]
    return [_Packet(p.data, t, d, p.duration or step, p.keyframe) for p, t, d in zip(group, pts, dts)]


def _remux(packets: list[_Packet], template: object, container: str) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream_from_template(template)
        base = min((p.dts for p in packets if p.dts is not None), default=0)
        base = min(base, min(p.pts for p in packets if p.pts is not None))
        for p in packets:  # rebased to start at 0 inside the segment (capture times are kept outside it)
            pkt = av.Packet(p.data)
            pkt.pts = p.pts - base  # type: ignore[operator]
            pkt.dts = None if p.dts is None else p.dts - base
            pkt.duration = p.duration
            pkt.is_keyframe = p.keyframe
            pkt.time_base = template.time_base  # type: ignore[attr-defined]
            pkt.stream = stream
            out.mux(pkt)
    return buf.getvalue()


def _closed_prefixes(packets: list[_Packet], max_frames: int, start: int = 0) -> list[int]:
    """Cut points (packet counts) of one group so each piece answers for at most ``max_frames`` frames.

    A cut is only allowed where every packet before it is presented before every packet after it
    (always so without B-frames), so a piece's answered frames are a run in presentation order.
    """
    n = len(packets)
    if n <= start:
        return []
    if n - start <= max_frames:
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
    allowed = [c for c in allowed if c > start]
    cuts, last = [], start
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
        self.origin: int | None = None  # earliest pts of the stream's first group: capture time 0
        rate = stream.average_rate or stream.guessed_rate  # type: ignore[attr-defined]
        ticks = 1 / (Fraction(rate) * self.time_base) if rate else Fraction(1)
        self.step = max(1, round(ticks))  # timestamp ticks per frame
        self._group: list[_Packet] = []
        self._sent = 0  # packets of the group in progress already sent as pieces
        self._in_order = True  # no packet yet presented before an earlier one (no B-frames): a cut can go anywhere
        self._last_pts: int | None = None
        self.skipped_before_keyframe = 0  # packets dropped because the stream did not start at a keyframe

    def push(self, packet: object) -> list[Segment]:
        """Add one demuxed packet; returns the segments it closed (at a keyframe)."""
        if packet.size == 0:  # type: ignore[attr-defined]  # the demuxer's flush packet
            return []
        p = _Packet(bytes(packet), packet.pts, packet.dts, int(packet.duration or 0),  # type: ignore[attr-defined]
                    bool(packet.is_keyframe))  # type: ignore[attr-defined]  # fmt: skip
        out = []
        if p.keyframe and self._group and (self.codec not in INTRA_ONLY or self._full(p)):
            out = self._close()
        if not self._group and not p.keyframe:
            self.skipped_before_keyframe += 1  # joined mid-group: undecodable until the next keyframe
            return out
        self._group.append(p)
        if p.pts is None or (self._last_pts is not None and p.pts < self._last_pts):
            self._in_order = False
        self._last_pts = p.pts if p.pts is not None else self._last_pts
        if self._in_order and len(self._group) - self._sent >= self.max_frames:
            # a long group of a stream without reordering: send this piece now rather than at the next keyframe
            out.append(self._piece(_filled(self._group, self.step), self._sent, self._sent + self.max_frames))
            self._sent += self.max_frames
        return out

    def _full(self, nxt: _Packet) -> bool:
        """An intra-only group has reached a length limit."""
        first = self._group[0].pts
        span = 0 if nxt.pts is None or first is None else (nxt.pts - first) * self.time_base
        return len(self._group) >= self.max_frames or span >= self.max_seconds

    def flush(self) -> list[Segment]:
        """Close the group in progress (end of file, stream lost)."""
        return self._close() if self._group else []

    def _piece(self, group: list[_Packet], start: int, cut: int) -> Segment:
        """The segment of ``group[:cut]`` answering for its frames ``start`` to ``cut`` in presentation order."""
        if self.origin is None:
            self.origin = min(p.pts for p in group)  # type: ignore[type-var]
        shown = sorted(p.pts for p in group[:cut])  # type: ignore[type-var]
        times = tuple(float((pts - self.origin) * self.time_base) for pts in shown[start:cut])
        return Segment(data=_remux(group[:cut], self.stream, self.container), container=self.container,
                       codec=self.codec, first_index=self.next_index + start, times=times, skip=start,
                       width=self.width, height=self.height)  # fmt: skip

    def _close(self) -> list[Segment]:
        group, start = _filled(self._group, self.step), self._sent
        self._group, self._sent = [], 0
        segments = []
        for cut in _closed_prefixes(group, self.max_frames, start):
            segments.append(self._piece(group, start, cut))
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
