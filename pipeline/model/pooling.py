"""Adaptive average pooling written as two small matrix products.

``nn.AdaptiveAvgPool2d`` pools bin ``i`` of an axis of length ``L`` over
``[floor(i*L/n), ceil((i+1)*L/n))``. ONNX has no such operator for arbitrary sizes, and the
official export's fixed-kernel replacement only agrees when ``L`` divides evenly. Each 2-D bin
is a rectangle, so pooling factors into a row-averaging and a column-averaging matrix; those are
built from the (static) feature size and export as plain MatMuls with identical semantics.
"""

from __future__ import annotations

import torch
from torch import nn


def adaptive_pool_matrix(length: int, bins: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(bins, length) matrix whose row ``i`` averages bin ``i`` of adaptive pooling."""
    mat = torch.zeros(bins, length, dtype=dtype, device=device)
    for i in range(bins):
        start = (i * length) // bins
        end = -((-(i + 1) * length) // bins)  # ceil division
        mat[i, start:end] = 1.0 / (end - start)
    return mat


class AdaptiveAvgPool(nn.Module):
    """Drop-in for ``nn.AdaptiveAvgPool2d(size)`` that exports exactly to ONNX."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        rows = adaptive_pool_matrix(h, self.size, dtype=x.dtype, device=x.device)
        cols = adaptive_pool_matrix(w, self.size, dtype=x.dtype, device=x.device)
        return torch.matmul(torch.matmul(rows, x), cols.t())

    def extra_repr(self) -> str:
        return f"size={self.size}"
