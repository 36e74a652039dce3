"""SparseInst in PyTorch: official-checkpoint compatible, trainable and exportable.

This package knows nothing of Kafka or Triton.
"""

from pipeline.model.build import MODEL_BUILDERS, build_model
from pipeline.model.checkpoint import load_model, load_official_checkpoint, save_checkpoint
from pipeline.model.predictor import Instances, Predictor
from pipeline.model.sparseinst import SparseInst

__all__ = [
    "MODEL_BUILDERS",
    "Instances",
    "Predictor",
    "SparseInst",
    "build_model",
    "load_model",
    "load_official_checkpoint",
    "save_checkpoint",
]
