"""Triton Python-backend model: see pipeline.serving.backends.preprocess_video."""

from pipeline.serving.backends.preprocess_video import TritonPythonModel  # noqa: F401
