"""The tensors between the client, the ensemble and its three models, defined once.

Every ``config.pbtxt`` of both profiles is rendered from these definitions and the Python-backend
models read their tensor names from here. Two ensembles share the network and the post-processing:
``sparseinst_pipeline`` takes a batch of JPEG frames, ``sparseinst_video`` one encoded video segment
(its frames become the network's batch). Dims exclude the batch dimension of batching models;
the video step and its ensemble do not batch (a segment is a request), so their dims are whole;
``-1`` is variable.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton's TYPE_* suffix
    dims: tuple[int, ...]

    @property
    def wire_dtype(self) -> str:
        """The client-side datatype name (``BYTES`` for strings)."""
        return "BYTES" if self.dtype == "STRING" else self.dtype


class ModelSpec(BaseModel):
    """What the serving side must know about a network: its fixed input and its output sizes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="architecture name, e.g. r18_giam_tiny")
    input_height: int = Field(gt=0, multiple_of=32)
    input_width: int = Field(gt=0, multiple_of=32)
    min_size: int = Field(gt=0, description="short side after resizing")
    max_size: int = Field(gt=0, description="long side limit after resizing")
    num_queries: int = Field(gt=0)
    num_classes: int = Field(gt=0)
    mask_stride: int = 4
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]

    @property
    def mask_height(self) -> int:
        return self.input_height // self.mask_stride

    @property
    def mask_width(self) -> int:
        return self.input_width // self.mask_stride


ENSEMBLE = "sparseinst_pipeline"
VIDEO_ENSEMBLE = "sparseinst_video"
PREPROCESS = "preprocess"
PREPROCESS_VIDEO = "preprocess_video"
NETWORK = "sparseinst"
POSTPROCESS = "postprocess"

# Encoded JPEG bytes, one row per frame, zero-padded to the longest frame of the request.
FRAMES = Tensor("frames", "UINT8", (-1,))
MAX_BATCH = 32
# Frames beyond this many pixels are refused before decoding (a 4K frame is 8.3 MP).
MAX_PIXELS = 40_000_000
MAX_SIDE = 16384

# Results: per frame, K instances padded to the largest K of the request; ``num_instances`` says K.
NUM_INSTANCES = Tensor("num_instances", "INT32", (1,))
SCORES = Tensor("scores", "FP32", (-1,))
CLASSES = Tensor("classes", "INT32", (-1,))
BOXES = Tensor("boxes", "FP32", (-1, 4))
MASKS_RLE = Tensor("masks_rle", "STRING", (-1,))  # COCO RLE ``counts`` strings at the frame size
QUERY_INDEX = Tensor("query_index", "INT32", (-1,))
FRAME_SIZE = Tensor("frame_size", "INT32", (2,))  # (height, width) of the decoded frame
RESULTS = (NUM_INSTANCES, SCORES, CLASSES, BOXES, MASKS_RLE, QUERY_INDEX, FRAME_SIZE)

# One encoded video segment (a container in memory) and how many leading frames it only decodes.
SEGMENT = Tensor("segment", "UINT8", (-1,))
SKIP = Tensor("skip", "INT32", (1,))
DECODER = Tensor("decoder", "STRING", (1,))  # which decoder the step used: dali-cpu, dali-gpu, ffmpeg
MAX_SEGMENT_BYTES = 256 * 1024 * 1024
MAX_DECODED_FRAMES = 4 * MAX_BATCH  # answered frames plus lead-in of one segment
NON_BATCHING = (PREPROCESS_VIDEO, VIDEO_ENSEMBLE)


def video_ensemble(image_ensemble: str) -> str:
    """The segment ensemble pinned to the same network version as ``image_ensemble`` (its ``_v<N>`` kept)."""
    if not image_ensemble.startswith(ENSEMBLE):
        raise ValueError(f"{image_ensemble!r} is not an image ensemble of this repository ({ENSEMBLE}[_v<N>])")
    return VIDEO_ENSEMBLE + image_ensemble[len(ENSEMBLE) :]


def per_frame(t: Tensor) -> Tensor:
    """``t`` with the frame axis made explicit, for the non-batching video models."""
    return Tensor(t.name, t.dtype, (-1, *t.dims))


def preprocess_outputs(spec: ModelSpec) -> tuple[Tensor, Tensor, Tensor]:
    return (
        Tensor("images", "FP32", (3, spec.input_height, spec.input_width)),
        Tensor("original_size", "INT32", (2,)),  # (height, width) of the decoded frame
        Tensor("resized_size", "INT32", (2,)),  # (height, width) of the frame inside the padded input
    )


def network_outputs(spec: ModelSpec) -> tuple[Tensor, ...]:
    """What the served network answers: only the kept queries (``pipeline.serving.selection``), K per batch."""
    return (
        Tensor("kept_scores", "FP32", (-1, spec.num_classes)),
        Tensor("kept_masks", "FP32", (-1, spec.mask_height, spec.mask_width)),
        Tensor("kept_queries", "INT32", (-1,)),
    )


@dataclass(frozen=True)
class ModelIO:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


def models(spec: ModelSpec) -> dict[str, ModelIO]:
    """Inputs and outputs of the three composing models and the ensemble."""
    images, original, resized = preprocess_outputs(spec)
    net = network_outputs(spec)
    scores, masks, queries = net
    post_inputs = (Tensor("class_scores", "FP32", scores.dims), Tensor("mask_logits", "FP32", masks.dims),
                   Tensor("queries", "INT32", queries.dims), original, resized)  # fmt: skip
    return {
        PREPROCESS: ModelIO(PREPROCESS, (FRAMES,), (images, original, resized)),
        PREPROCESS_VIDEO: ModelIO(PREPROCESS_VIDEO, (SEGMENT, SKIP),
                                  (*(per_frame(t) for t in (images, original, resized)), DECODER)),
        NETWORK: ModelIO(NETWORK, (images,), net),
        POSTPROCESS: ModelIO(POSTPROCESS, post_inputs, RESULTS),
        ENSEMBLE: ModelIO(ENSEMBLE, (FRAMES,), RESULTS),
        VIDEO_ENSEMBLE: ModelIO(VIDEO_ENSEMBLE, (SEGMENT, SKIP), (*(per_frame(t) for t in RESULTS), DECODER)),
    }  # fmt: skip


# How an ensemble wires them: (model, {model tensor: ensemble tensor}) for inputs and outputs.
def ensemble_steps(spec: ModelSpec, video: bool = False) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    prepared = {"images": "_images", "original_size": "_original_size", "resized_size": "_resized_size"}
    first = (
        (PREPROCESS_VIDEO, {"segment": "segment", "skip": "skip"}, {**prepared, "decoder": "decoder"})
        if video
        else (PREPROCESS, {"frames": "frames"}, prepared)
    )
    return [
        first,
        (NETWORK, {"images": "_images"},
         {"kept_scores": "_class_scores", "kept_masks": "_mask_logits", "kept_queries": "_queries"}),
        (POSTPROCESS,
         {"class_scores": "_class_scores", "mask_logits": "_mask_logits", "queries": "_queries",
          "original_size": "_original_size", "resized_size": "_resized_size"},
         {t.name: t.name for t in RESULTS}),
    ]  # fmt: skip
