"""Streaming SparseInst instance segmentation: cameras in, masks and events out."""

__version__ = "0.1.0"
