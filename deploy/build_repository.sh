#!/usr/bin/env bash
# Build the GPU-profile model repository into $1 (default /models): configs and ONNX from the
# checkpoint ($WEIGHTS, default the shipped model), the TensorRT plan, and model.dali.
# Idempotent: an existing plan for the same ONNX file is kept (delete it to rebuild).
set -euo pipefail
OUT="${1:-/models}"
WEIGHTS_ARG=()
if [[ -n "${WEIGHTS:-}" ]]; then WEIGHTS_ARG=(--weights "$WEIGHTS"); fi

sparseinst-pipeline repo build --target gpu --out "$OUT" "${WEIGHTS_ARG[@]}"
if [[ ! -f "$OUT/sparseinst/1/model.plan" || "$OUT/sparseinst/1/model.onnx" -nt "$OUT/sparseinst/1/model.plan" ]]; then
  sparseinst-pipeline model build-engine --onnx "$OUT/sparseinst/1/model.onnx" \
    --out "$OUT/sparseinst/1/model.plan" --timing-cache "$OUT/.timing.cache"
fi
python -m dali.serialize --device gpu --params "$OUT/preprocess/1/preprocess.json" \
  --out "$OUT/preprocess/1/model.dali"
echo "model repository ready in $OUT"
