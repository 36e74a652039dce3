"""Helpers shared by the Python-backend models."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("sparseinst.serving")


def parameters(args: dict[str, str]) -> dict[str, str]:
    """The ``parameters`` block of the model's config as a plain dict."""
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def resize_params(p: dict[str, str]) -> dict[str, object]:
    """The keyword arguments of ``dali.preprocess.fit_to_input`` from a preprocessing model's parameters."""
    return {
        "min_size": int(p["min_size"]),
        "max_size": int(p["max_size"]),
        "input_height": int(p["input_height"]),
        "input_width": int(p["input_width"]),
        "pixel_mean": tuple(float(v) for v in p["pixel_mean"].split(",")),
        "pixel_std": tuple(float(v) for v in p["pixel_std"].split(",")),
    }


def error_response(pb_utils: Any, message: str, *, invalid: bool = False) -> Any:
    """An error answer for one request; ``invalid`` marks the request itself as bad (INVALID_ARGUMENT)."""
    code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def short_error(exc: BaseException) -> str:
    """The informative tail of a long (DALI, ONNX Runtime) error message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    picked = [ln for ln in lines if "rror" in ln or "Could not" in ln][-2:] or lines[-1:]
    return " / ".join(picked)[:500] or type(exc).__name__
