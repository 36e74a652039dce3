# NGC Triton (TensorRT, DALI and Python backends) plus the project's Python package, which the
# repository's Python-backend models (postprocess, preprocess_video) and the DALI pipeline module
# import. That code needs numpy and pydantic, and the video step DALI's Python module (NVDEC through
# `fn.decoders.video`, device "mixed") and PyAV (reads a segment's codec from its container), and
# post-processing numba (its mask kernels) and threadpoolctl (one BLAS thread for its small products):
# the package goes in without its other dependencies.
# 25.xx images are Ubuntu 24.04 with Python 3.12 (24.xx: Python 3.10, below the package's 3.11).
ARG TRITON_VERSION=25.01
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3
# the image's system Python is the one the Python backend runs
ENV PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /opt/sparseinst
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY consumers ./consumers
COPY dali ./dali
RUN pip install --no-cache-dir "numpy>=1.26,<2" "pydantic>=2.6" "av>=14" "nvidia-dali-cuda120>=1.40" \
        "numba>=0.60" "threadpoolctl>=3" && \
    pip install --no-cache-dir --no-deps .
