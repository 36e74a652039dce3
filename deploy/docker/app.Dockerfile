# The pipeline's own processes (ingest, consumers): CPU only, no PyTorch needed at run time,
# but the package's dependencies include it, so the image is large; slim it with a wheelhouse if needed.
FROM python:3.11-slim
EXPOSE 9400
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libgl1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY consumers ./consumers
COPY dali ./dali
COPY configs ./configs
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu .
ENTRYPOINT ["sparseinst-pipeline"]
