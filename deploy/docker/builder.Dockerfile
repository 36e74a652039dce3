# One-shot repository builder on a GPU host: exports ONNX from the checkpoint (PyTorch), builds the
# TensorRT plan for this GPU, and serializes the DALI GPU pipeline (which needs CUDA to be created).
# The NGC PyTorch image carries PyTorch, TensorRT and DALI built for the same CUDA.
# 25.xx images have Python 3.12 (24.xx: 3.10, below the package's 3.11).
ARG PYTORCH_VERSION=25.01
FROM nvcr.io/nvidia/pytorch:${PYTORCH_VERSION}-py3
WORKDIR /opt/sparseinst
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY consumers ./consumers
COPY dali ./dali
COPY configs ./configs
COPY deploy/build_repository.sh ./deploy/build_repository.sh
# keep the image's own torch, tensorrt and DALI: install the package without resolving them again
RUN pip install --no-cache-dir --no-deps . && \
    pip install --no-cache-dir "numpy>=1.26,<2" onnx onnxruntime pydantic pydantic-settings pyyaml tqdm pillow scipy
ENTRYPOINT ["bash", "deploy/build_repository.sh"]
