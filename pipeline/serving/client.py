"""Async gRPC client of the ``sparseinst_pipeline`` and ``sparseinst_video`` ensembles.

One image request carries a batch of JPEG frames (from any cameras), one video request an encoded
segment of one camera; the answer is decoded into one :class:`pipeline.messages.FrameDetections`
per frame. Unavailability (a server restarting, a
connection refused) is retried with exponential backoff; bad requests are not retried;
every request has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import rle
from pipeline.data.classes import class_name
from pipeline.errors import (
    BadAnswerError,
    InferenceError,
    InferenceTimeoutError,
    InvalidRequestError,
    ServerUnavailableError,
)
from pipeline.messages import Detection, FrameDetections, RleMask
from pipeline.serving import contract
from pipeline.serving.jpeg import InvalidFrame, check_frame

log = logging.getLogger(__name__)

_RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"}
_INVALID = {"StatusCode.INVALID_ARGUMENT", "StatusCode.OUT_OF_RANGE", "StatusCode.FAILED_PRECONDITION"}


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Triton gRPC address, host:port")
    model_name: str = contract.ENSEMBLE
    model_version: str = Field("", description="explicit version to use; empty = the server's policy")
    timeout_s: float = Field(10.0, gt=0, description="deadline of one request of JPEG frames")
    segment_timeout_s: float = Field(60.0, gt=0, description="deadline of one video segment (up to 32 frames)")
    retries: int = Field(5, ge=0, description="retries while the server is unavailable")
    backoff_s: float = Field(0.2, gt=0, description="first retry delay; doubles each time")
    max_backoff_s: float = Field(5.0, gt=0)


@dataclass(frozen=True)
class Frame:
    """One encoded frame and what identifies it."""

    jpeg: bytes
    camera_id: str
    frame_index: int
    capture_time: float
    vehicle_id: str | None = None


@dataclass(frozen=True)
class FrameId:
    """What identifies a frame of a segment (the segment carries the pixels)."""

    camera_id: str
    frame_index: int
    capture_time: float
    vehicle_id: str | None = None


@dataclass(frozen=True)
class VideoSegment:
    """One camera's encoded segment (``pipeline.ingest.segments``) and the identity of the frames it answers for."""

    data: bytes
    skip: int  # leading frames to decode but not answer for
    frames: tuple[FrameId, ...]


@dataclass(frozen=True)
class FrameFailure:
    """A frame the server refused, and why (returned by :meth:`SegmentationClient.infer_isolating`)."""

    frame: Frame | FrameId
    reason: str


def pack_frames(jpegs: Sequence[bytes]) -> np.ndarray:
    """(B, L) uint8: each frame's bytes zero-padded to the longest (JPEG decoders stop at the end marker)."""
    if not jpegs:
        raise InvalidRequestError("empty batch: a request needs at least one frame")
    width = max(len(j) for j in jpegs)
    out = np.zeros((len(jpegs), width), dtype=np.uint8)
    for i, j in enumerate(jpegs):
        out[i, : len(j)] = np.frombuffer(j, dtype=np.uint8)
    return out


def decode_results(outputs: dict[str, np.ndarray], frames: Sequence[Frame | FrameId], model_name: str,
                   model_version: str) -> list[FrameDetections]:  # fmt: skip
    """The ensemble's padded output arrays -> one :class:`FrameDetections` per frame.

    Outputs that make no valid result raise :class:`BadAnswerError` for the batch (the caller
    counts its frames as ``bad_answer``; a canary batch goes to live instead).
    """
    try:
        return _decode(outputs, frames, model_name, model_version)
    except (ValidationError, IndexError, KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        detail = (str(exc).splitlines() or [""])[0]
        raise BadAnswerError(f"malformed answer from {model_name} {model_version}: {type(exc).__name__}: "
                             f"{detail}") from None  # fmt: skip


def _decode(outputs: dict[str, np.ndarray], frames: Sequence[Frame | FrameId], model_name: str,
            model_version: str) -> list[FrameDetections]:  # fmt: skip
    result = []
    for i, frame in enumerate(frames):
        n = int(outputs["num_instances"][i, 0])
        if not 0 <= n <= outputs["scores"].shape[1]:
            raise IndexError(f"frame {i}: {n} instances, the outputs hold {outputs['scores'].shape[1]}")
        h, w = (int(v) for v in outputs["frame_size"][i])
        instances = []
        for j in range(n):
            counts = outputs["masks_rle"][i, j]
            counts = counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
            mask = RleMask(size=(h, w), counts=counts)
            cls = int(outputs["classes"][i, j])
            instances.append(
                Detection(
                    class_id=cls,
                    class_name=class_name(cls),
                    score=float(outputs["scores"][i, j]),
                    box=tuple(float(v) for v in outputs["boxes"][i, j]),
                    area=rle.area(mask.model_dump()),
                    mask=mask,
                    query=int(outputs["query_index"][i, j]),
                )
            )
        result.append(
            FrameDetections(
                camera_id=frame.camera_id,
                vehicle_id=frame.vehicle_id,
                frame_index=frame.frame_index,
                capture_time=frame.capture_time,
                width=w,
                height=h,
                model_name=model_name,
                model_version=model_version,
                instances=instances,
            )
        )
    return result


class SegmentationClient:
    """``async with SegmentationClient(ClientConfig(url=...)) as c: await c.infer(frames)``."""

    def __init__(self, config: ClientConfig) -> None:
        import tritonclient.grpc.aio as grpcclient

        self.config = config
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(config.url)
        self.retried = 0  # unavailability retries so far, for reports
        self._label: str | None = None  # the network version the ensemble pins (what detections say)

    async def __aenter__(self) -> SegmentationClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_model_ready(self.config.model_name, self.config.model_version))
        except Exception:
            return False

    async def infer(self, frames: Sequence[Frame]) -> list[FrameDetections]:
        """Segment a batch of frames in one request. Raises an :class:`InferenceError` subclass."""
        if len(frames) > contract.MAX_BATCH:
            raise InvalidRequestError(f"batch of {len(frames)} frames exceeds the limit of {contract.MAX_BATCH}")
        for i, f in enumerate(frames):
            try:
                check_frame(f.jpeg, max_pixels=contract.MAX_PIXELS, max_side=contract.MAX_SIDE)
            except InvalidFrame as exc:
                raise InvalidRequestError(f"frame {i} (camera {f.camera_id}, #{f.frame_index}): {exc}") from None
        batch = pack_frames([f.jpeg for f in frames])  # refuses an empty batch
        inp = self._grpc.InferInput(contract.FRAMES.name, list(batch.shape), contract.FRAMES.wire_dtype)
        inp.set_data_from_numpy(batch)
        outputs = [self._grpc.InferRequestedOutput(t.name) for t in contract.RESULTS]
        result = await self._call([inp], outputs, self.config.timeout_s)
        response = result.get_response()
        arrays = {t.name: result.as_numpy(t.name) for t in contract.RESULTS}
        version = await self.network_version() or response.model_version
        return decode_results(arrays, frames, response.model_name, version)

    async def infer_segment(self, segment: VideoSegment) -> tuple[list[FrameDetections], str]:
        """Segment every frame of one encoded segment (``model_name`` is a video ensemble).

        Returns one :class:`FrameDetections` per frame of ``segment.frames`` and the decoder the
        server used. A segment the server refuses raises :class:`InvalidRequestError`; an answer with
        another number of frames raises :class:`BadAnswerError`.
        """
        if not segment.data or not segment.frames:
            raise InvalidRequestError("empty segment: a request needs encoded bytes and at least one frame")
        if len(segment.frames) > contract.MAX_BATCH:
            raise InvalidRequestError(f"segment of {len(segment.frames)} frames exceeds the limit of "
                                      f"{contract.MAX_BATCH}")  # fmt: skip
        data = self._grpc.InferInput(contract.SEGMENT.name, [len(segment.data)], contract.SEGMENT.wire_dtype)
        data.set_data_from_numpy(np.frombuffer(segment.data, dtype=np.uint8))
        skip = self._grpc.InferInput(contract.SKIP.name, [1], contract.SKIP.wire_dtype)
        skip.set_data_from_numpy(np.array([segment.skip], dtype=np.int32))
        names = [t.name for t in (*contract.RESULTS, contract.DECODER)]
        outputs = [self._grpc.InferRequestedOutput(n) for n in names]
        result = await self._call([data, skip], outputs, self.config.segment_timeout_s)
        response = result.get_response()
        arrays = {n: result.as_numpy(n) for n in names}
        answered = arrays["num_instances"].shape[0] if arrays["num_instances"] is not None else 0
        if answered != len(segment.frames):
            raise BadAnswerError(f"{response.model_name} answered {answered} frames for a segment of "
                                 f"{len(segment.frames)}")  # fmt: skip
        decoder = arrays.pop(contract.DECODER.name).reshape(-1)[0]
        decoder = decoder.decode() if isinstance(decoder, bytes) else str(decoder)
        version = await self.network_version() or response.model_version
        return decode_results(arrays, segment.frames, response.model_name, version), decoder

    async def infer_segment_isolating(self, segment: VideoSegment
                                      ) -> tuple[list[FrameDetections | FrameFailure], str | None]:  # fmt: skip
        """Like :meth:`infer_segment`, but a refused segment gives one :class:`FrameFailure` per frame (and
        no decoder) instead of raising."""
        try:
            results, decoder = await self.infer_segment(segment)
        except InvalidRequestError as exc:
            return [FrameFailure(f, f"segment refused: {exc}") for f in segment.frames], None
        return list(results), decoder

    async def network_version(self) -> str | None:
        """The ``sparseinst`` version the ensemble pins (read once from the server); None if it pins none."""
        if self._label is None:
            from pipeline.serving.versions import pinned_version

            try:
                config = await self._client.get_model_config(self.config.model_name, as_json=True)
            except Exception as exc:  # the answer itself came from the model: label it as before
                log.warning("config of %s unreadable (%s): labelling by the ensemble version", self.config.model_name,
                            exc)  # fmt: skip
                return None
            self._label = pinned_version(config.get("config", config)) or ""
        return self._label or None

    async def infer_isolating(self, frames: Sequence[Frame]) -> list[FrameDetections | FrameFailure]:
        """Like :meth:`infer`, but a bad frame fails alone: a refused batch is retried frame by frame."""
        try:
            return list(await self.infer(frames))
        except InvalidRequestError as exc:
            if len(frames) == 1:
                return [FrameFailure(frames[0], str(exc))]
        out: list[FrameDetections | FrameFailure] = []
        for f in frames:
            out.extend(await self.infer_isolating([f]))
        return out

    async def _call(self, inputs: list, outputs: list, timeout_s: float) -> object:
        from tritonclient.utils import InferenceServerException

        cfg = self.config
        delay = cfg.backoff_s
        for attempt in range(cfg.retries + 1):
            try:
                return await self._client.infer(cfg.model_name, inputs, model_version=cfg.model_version,
                                                outputs=outputs, client_timeout=timeout_s)  # fmt: skip
            except InferenceServerException as exc:
                status = str(exc.status())
                if status == "StatusCode.DEADLINE_EXCEEDED":
                    raise InferenceTimeoutError(f"no answer within {timeout_s} s from {cfg.url}") from None
                if status in _INVALID:
                    raise InvalidRequestError(exc.message()) from None
                if status not in _RETRYABLE:
                    raise InferenceError(f"{status}: {exc.message()}") from None
                if attempt == cfg.retries:
                    raise ServerUnavailableError(
                        f"{cfg.url} unavailable after {cfg.retries + 1} attempts: {exc.message()}"
                    ) from None
                self.retried += 1
                log.warning("Triton at %s unavailable (%s); retry %d/%d in %.1f s",
                            cfg.url, exc.message(), attempt + 1, cfg.retries, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, cfg.max_backoff_s)
        raise AssertionError("unreachable")
