"""The tensors between the client, the ensemble and its three models, defined once.

Every ``config.pbtxt`` of both profiles is rendered from these definitions, the Python-backend
models read their tensor names from here, and a test checks the rendered files against them.
Dims exclude the batch dimension (every model batches); ``-1`` is variable.
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
PREPROCESS = "preprocess"
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


def preprocess_outputs(spec: ModelSpec) -> tuple[Tensor, Tensor, Tensor]:
    return (
        Tensor("images", "FP32", (3, spec.input_height, spec.input_width)),
        Tensor("original_size", "INT32", (2,)),  # (height, width) of the decoded frame
        Tensor("resized_size", "INT32", (2,)),  # (height, width) of the frame inside the padded input
    )


def network_outputs(spec: ModelSpec) -> tuple[Tensor, ...]:
    n, c = spec.num_queries, spec.num_classes
    return (
        Tensor("pred_logits", "FP32", (n, c)),
        Tensor("pred_objectness", "FP32", (n, 1)),
        Tensor("pred_masks", "FP32", (n, spec.mask_height, spec.mask_width)),
        Tensor("scores", "FP32", (n, c)),
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
    masks, scores = net[2], net[3]
    post_inputs = (Tensor("class_scores", "FP32", scores.dims), Tensor("mask_logits", "FP32", masks.dims),
                   original, resized)  # fmt: skip
    return {
        PREPROCESS: ModelIO(PREPROCESS, (FRAMES,), (images, original, resized)),
        NETWORK: ModelIO(NETWORK, (images,), net),
        POSTPROCESS: ModelIO(POSTPROCESS, post_inputs, RESULTS),
        ENSEMBLE: ModelIO(ENSEMBLE, (FRAMES,), RESULTS),
    }


# How the ensemble wires them: (model, {model tensor: ensemble tensor}) for inputs and outputs.
def ensemble_steps(spec: ModelSpec) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    return [
        (PREPROCESS, {"frames": "frames"},
         {"images": "_images", "original_size": "_original_size", "resized_size": "_resized_size"}),
        (NETWORK, {"images": "_images"}, {"scores": "_class_scores", "pred_masks": "_mask_logits"}),
        (POSTPROCESS,
         {"class_scores": "_class_scores", "mask_logits": "_mask_logits", "original_size": "_original_size",
          "resized_size": "_resized_size"},
         {t.name: t.name for t in RESULTS}),
    ]  # fmt: skip
