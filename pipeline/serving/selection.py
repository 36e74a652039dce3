"""Only the kept instances leave the network: the score threshold and a top-K over queries, in the graph.

The exported network answers every query: ``scores`` (B, N, C) and ``pred_masks`` (B, N, h, w),
about 10 MB a frame at 640x640 for 100 queries, although post-processing uses only the queries
scoring above the threshold (a handful to a few dozen). The served graph appends a selection to the
export: per frame the queries whose best class score is above ``score_threshold``, in query order,
gathered to ``K`` = the most any frame of the batch keeps (at least 1), and padded with the
frame's other queries. Post-processing applies the same threshold again, which drops the padding,
so its results are exactly those of the full tensors; ``kept_queries`` maps each row back to its
query. On a GPU host the gather runs inside the TensorRT plan, so only these rows cross to the host.

The nodes are plain ONNX (ReduceMax, Greater, ReduceSum, TopK with a computed K, GatherND with a
batch dimension), appended to the exported file with the ``onnx`` package: the graph PyTorch
exported is kept as it is, and the same served file feeds ONNX Runtime (CPU) and the TensorRT
builder (GPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCORES, MASKS = "scores", "pred_masks"  # the exported outputs the selection reads
KEPT_SCORES, KEPT_MASKS, KEPT_QUERIES = "kept_scores", "kept_masks", "kept_queries"
KEPT_OUTPUTS = (KEPT_SCORES, KEPT_MASKS, KEPT_QUERIES)


def graph_threshold(score_threshold: float) -> np.float32:
    """The float32 the graph compares with: one step below ``score_threshold`` in float32, so the graph keeps
    at least every score post-processing keeps (it compares float32 scores with the float64 threshold)."""
    return np.nextafter(np.float32(score_threshold), np.float32(-np.inf))


def select_kept(scores: np.ndarray, masks: np.ndarray, score_threshold: float) -> tuple[np.ndarray, ...]:
    """The selection in numpy, as the graph computes it (the reference the tests hold the graph to)."""
    best = scores.max(axis=2)
    keep = best > graph_threshold(score_threshold)
    k = max(int(keep.sum(axis=1).max(initial=0)), 1)
    n = scores.shape[1]
    key = keep * (n - np.arange(n, dtype=np.float32))  # kept queries first, in query order
    order = np.argsort(-key, axis=1, kind="stable")[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    return scores[rows, order], masks[rows, order], order.astype(np.int32)


def append_selection(model, score_threshold: float):
    """``model`` (an exported ``onnx.ModelProto``) with the kept-instance outputs in place of the raw ones."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if SCORES not in outputs or MASKS not in outputs:
        raise ValueError(f"the graph has no {SCORES!r} and {MASKS!r} outputs (outputs: {sorted(outputs)})")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        raise ValueError(f"the selection needs opset 13 or later (ReduceSum with axes as an input), got {opset}")

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    p = "select/"
    thr = const(p + "threshold", np.array(graph_threshold(score_threshold), np.float32))
    zero, step = const(p + "zero", np.array(0, np.int64)), const(p + "step", np.array(1, np.int64))
    axis1 = const(p + "axis1", np.array([1], np.int64))
    one = const(p + "one", np.array([1], np.int64))
    last = const(p + "last", np.array([-1], np.int64))
    # ReduceMax takes its axes as an attribute up to opset 17 and as an input from 18
    best = (helper.make_node("ReduceMax", [SCORES], [p + "best"], axes=[2], keepdims=0) if opset < 18 else
            helper.make_node("ReduceMax", [SCORES, const(p + "axis2", np.array([2], np.int64))], [p + "best"],
                             keepdims=0))  # fmt: skip
    nodes = [
        best,
        helper.make_node("Greater", [p + "best", thr], [p + "keep"]),
        helper.make_node("Cast", [p + "keep"], [p + "keep_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", [p + "keep"], [p + "keep_i"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", [p + "keep_i", axis1], [p + "per_frame"], keepdims=0),
        # K: the most any frame keeps, at least 1 (a batch with nothing kept still answers one row)
        helper.make_node("ReduceMax", [p + "per_frame"], [p + "most"], keepdims=1),
        helper.make_node("Max", [p + "most", one], [p + "k"]),
        # key: n - q for a kept query q, 0 for the others (so the top K are the kept ones, in query order)
        helper.make_node("Shape", [SCORES], [p + "shape"]),
        helper.make_node("Gather", [p + "shape", step], [p + "n"], axis=0),
        helper.make_node("Range", [zero, p + "n", step], [p + "q"]),
        helper.make_node("Sub", [p + "n", p + "q"], [p + "rank_i"]),
        helper.make_node("Cast", [p + "rank_i"], [p + "rank"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [p + "keep_f", p + "rank"], [p + "key"]),
        helper.make_node("TopK", [p + "key", p + "k"], [p + "key_top", p + "order"], axis=1, largest=1, sorted=1),
        helper.make_node("Unsqueeze", [p + "order", last], [p + "order_nd"]),
        helper.make_node("GatherND", [SCORES, p + "order_nd"], [KEPT_SCORES], batch_dims=1),
        helper.make_node("GatherND", [MASKS, p + "order_nd"], [KEPT_MASKS], batch_dims=1),
        helper.make_node("Cast", [p + "order"], [KEPT_QUERIES], to=TensorProto.INT32),
    ]
    for node in nodes:  # named under "select/": the engine builder keeps these layers in FP32
        node.name = node.name or p + node.output[0].removeprefix(p)
    graph.node.extend(nodes)

    def dims(name: str) -> list:  # past (batch, query): fixed sizes where the export recorded them
        return [d.dim_value or d.dim_param or None for d in outputs[name].type.tensor_type.shape.dim][2:]

    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info(KEPT_SCORES, TensorProto.FLOAT, ["batch", "kept", *dims(SCORES)]),
        helper.make_tensor_value_info(KEPT_MASKS, TensorProto.FLOAT, ["batch", "kept", *dims(MASKS)]),
        helper.make_tensor_value_info(KEPT_QUERIES, TensorProto.INT32, ["batch", "kept"]),
    ])  # fmt: skip
    onnx.checker.check_model(model)
    return model


def write_served_network(exported: Path, served: Path, score_threshold: float) -> Path:
    """The served network file: ``exported`` (the raw ONNX export) with the selection appended."""
    import onnx

    model = append_selection(onnx.load(str(exported)), score_threshold)
    served = Path(served)
    served.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(served))
    return served


def is_served(path: Path) -> bool:
    """Does the ONNX file answer kept instances already (rather than every query)?"""
    import onnx

    names = {o.name for o in onnx.load(str(path), load_external_data=False).graph.output}
    return set(KEPT_OUTPUTS) <= names
