"""``preprocess_video`` (both profiles): one encoded segment in, the network's batch of its frames out.

The decoder is chosen per segment from the codec in its container: on GPU hosts DALI's ``mixed``
video decoder (NVDEC) for every codec; on CPU DALI's CPU decoder where it takes the codec (VP8,
VP9, MJPEG) and FFmpeg (PyAV) where it does not (H.264, H.265), whose frames then go through the
same DALI resize-normalise-pad as every other source (``dali.preprocess.fit_to_input``). Which
decoder ran is returned per request and counted in the model's log. A segment that cannot be
parsed or decoded, or is too large, is refused as an invalid request naming why.
"""

from __future__ import annotations

import io
from collections import Counter

import numpy as np

from pipeline.serving import contract
from pipeline.serving.backends.common import error_response, log, parameters, resize_params, short_error

DALI_CPU_CODECS = {"vp8", "vp9", "mjpeg"}  # DALI 2.x's CPU decoder refuses H.264/H.265 ("CPU variant")


class InvalidSegment(ValueError):
    """The bytes are not a segment the pipeline accepts."""


def probe(segment: bytes, max_packets: int) -> tuple[str, int, int, int]:
    """(codec, height, width, packets) from the container, without decoding; refused past ``max_packets``
    (a decoder would otherwise be handed an arbitrarily long video)."""
    import av

    try:
        with av.open(io.BytesIO(segment)) as container:
            if not container.streams.video:
                raise InvalidSegment("the segment holds no video stream")
            stream = container.streams.video[0]
            packets = 0
            for packet in container.demux(stream):
                packets += packet.size > 0
                if packets > max_packets:
                    raise InvalidSegment(f"segment holds more than {max_packets} frames")
            ctx = stream.codec_context
            return ctx.name, int(ctx.height), int(ctx.width), packets
    except av.FFmpegError as exc:
        raise InvalidSegment(f"not a video segment the decoder can parse: {exc}") from None


def ffmpeg_frames(segment: bytes, skip: int) -> list[np.ndarray]:
    """The segment's frames after ``skip`` as RGB arrays, decoded by FFmpeg on the CPU (its length was
    bounded by :func:`probe`)."""
    import av

    frames = []
    try:
        with av.open(io.BytesIO(segment)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= skip:
                    frames.append(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as exc:
        raise InvalidSegment(f"decoding failed (corrupt or truncated segment): {exc}") from None
    return frames


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        from dali.preprocess import build_pipeline

        p = parameters(args)
        self.device = p.get("device", "cpu")
        self.params = resize_params(p)
        self.max_frames = int(p.get("max_frames", contract.MAX_BATCH))
        self.threads = int(p.get("threads", 2)) or 2
        self.device_id = int(args.get("model_instance_device_id", 0)) if self.device == "gpu" else None
        self._build = build_pipeline
        self.decoders: Counter[str] = Counter()  # decoder -> segments, logged now and then
        self._video = self._frames = None
        self._new_pipelines()

    def _new_pipelines(self) -> None:
        dev = "gpu" if self.device == "gpu" else "cpu"
        self._video = self._build(dev, self.params, batch_size=1, num_threads=self.threads, device_id=self.device_id,
                                  source="video")  # fmt: skip
        self._video.build()
        if self.device != "gpu":
            self._frames = self._build("cpu", self.params, batch_size=self.max_frames, num_threads=self.threads,
                                       source="frames")  # fmt: skip
            self._frames.build()

    def _run(self, segment: np.ndarray, skip: int) -> tuple[dict[str, np.ndarray], str]:
        if segment.ndim != 1 or segment.size == 0:
            raise InvalidSegment(f"expected one encoded segment (bytes), got shape {segment.shape}")
        if segment.size > contract.MAX_SEGMENT_BYTES:
            raise InvalidSegment(f"segment of {segment.size} bytes exceeds the limit of {contract.MAX_SEGMENT_BYTES}")
        if not 0 <= skip < contract.MAX_DECODED_FRAMES:
            raise InvalidSegment(f"skip must be within [0, {contract.MAX_DECODED_FRAMES}), got {skip}")
        data = segment.tobytes()
        codec, h, w, packets = probe(data, contract.MAX_DECODED_FRAMES)
        if not 0 < packets - skip <= self.max_frames:
            raise InvalidSegment(f"segment of {packets} frames with {skip} skipped answers for {packets - skip}; "
                                 f"a segment must answer for 1 to {self.max_frames}")  # fmt: skip
        if h <= 0 or w <= 0 or h > contract.MAX_SIDE or w > contract.MAX_SIDE or h * w > contract.MAX_PIXELS:
            raise InvalidSegment(f"frame of {w}x{h} pixels exceeds the limit ({contract.MAX_PIXELS} pixels, "
                                 f"{contract.MAX_SIDE} per side)")  # fmt: skip
        if self.device == "gpu" or codec in DALI_CPU_CODECS:
            decoder = "dali-gpu" if self.device == "gpu" else "dali-cpu"
            self._video.feed_input("segment", [segment])
            self._video.feed_input("skip", [np.array([skip], dtype=np.int32)])
            images, original, resized = (out.as_cpu() if hasattr(out, "as_cpu") else out for out in self._video.run())
            batch = images.as_array()[0]
            original, resized = original.as_array()[0], resized.as_array()[0]
        else:
            decoder = "ffmpeg"
            frames = ffmpeg_frames(data, skip)
            if not frames:  # fewer decodable frames than packets
                raise InvalidSegment(f"segment has no frames after skipping {skip}")
            self._frames.feed_input("decoded", frames)
            images, original, resized = self._frames.run()
            batch, original, resized = images.as_array(), original.as_array()[0], resized.as_array()[0]
        n = batch.shape[0]
        if n == 0 or n > self.max_frames:
            raise InvalidSegment(f"segment answers for {n} frames; a segment must answer for 1 to {self.max_frames}")
        out = {
            "images": np.ascontiguousarray(batch),
            "original_size": np.tile(np.asarray(original, dtype=np.int32).reshape(1, 2), (n, 1)),
            "resized_size": np.tile(np.asarray(resized, dtype=np.int32).reshape(1, 2), (n, 1)),
            "decoder": np.array([decoder.encode()], dtype=np.object_),
        }
        return out, decoder

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            segment = pb_utils.get_input_tensor_by_name(request, "segment").as_numpy()
            skip = pb_utils.get_input_tensor_by_name(request, "skip").as_numpy().reshape(-1)
            try:
                out, decoder = self._run(segment, int(skip[0]) if skip.size else -1)
            except InvalidSegment as exc:
                responses.append(error_response(pb_utils, str(exc), invalid=True))
                continue
            except Exception as exc:  # DALI reports an undecodable segment as a RuntimeError
                reason = f"segment decoding failed: {short_error(exc)}"
                log.warning("preprocess_video refused a request: %s", reason)
                responses.append(error_response(pb_utils, reason, invalid=True))
                self._new_pipelines()  # DALI declares the pipeline object invalid after a failed run
                continue
            self.decoders[decoder] += 1
            if sum(self.decoders.values()) % 500 == 1:
                log.info("preprocess_video segments by decoder: %s", dict(self.decoders))
            tensors = [pb_utils.Tensor(name, arr) for name, arr in out.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
