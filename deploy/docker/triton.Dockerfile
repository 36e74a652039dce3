# NGC Triton (TensorRT, DALI and Python backends) plus the project's Python package, which the
# repository's Python-backend model (postprocess) and the DALI pipeline module import.
# Only numpy and pydantic are needed by that code: the package goes in without its dependencies.
ARG TRITON_VERSION=24.10
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3
WORKDIR /opt/sparseinst
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY consumers ./consumers
COPY dali ./dali
RUN pip install --no-cache-dir "numpy>=1.26,<2" "pydantic>=2.6" && pip install --no-cache-dir --no-deps .
