# The pipeline's own processes (ingest, consumers, rollout controller): CPU only, no PyTorch, no DALI.
FROM python:3.11-slim
EXPOSE 9400
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libgl1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY consumers ./consumers
COPY dali ./dali
COPY configs ./configs
RUN pip install --no-cache-dir '.[ingest,consume]'
ENTRYPOINT ["sparseinst-pipeline"]
