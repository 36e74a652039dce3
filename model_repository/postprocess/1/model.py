"""Triton Python-backend model: see pipeline.serving.backends.postprocess."""

from pipeline.serving.backends.postprocess import TritonPythonModel  # noqa: F401
