"""What ``run``, ``consume`` and ``demo`` share: service addresses, a live progress line, metrics endpoints."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

from tqdm import tqdm

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.kafka.connection import KafkaConnection, check_connection
from pipeline.kafka.topics import ensure_topics
from pipeline.serving.client import ClientConfig

log = logging.getLogger(__name__)


def addresses(settings: Settings, *, need_triton: bool = True) -> tuple[str, str | None]:
    """Kafka bootstrap and Triton gRPC from the settings (the command line fills in the embedded services')."""
    bootstrap, grpc = settings.kafka.bootstrap, settings.triton.grpc_url
    if not bootstrap or (need_triton and not grpc):
        raise ConfigError("no Kafka/Triton configured and none running: set kafka.bootstrap and triton.grpc_url, "
                          "or start the embedded ones with 'sparseinst-pipeline up'")  # fmt: skip
    return bootstrap, grpc


def kafka_ready(settings: Settings, bootstrap: str) -> KafkaConnection:
    """The checked connection (a refused login fails here, in one line), with the topics in place."""
    conn = settings.kafka.connection(bootstrap)
    check_connection(conn)
    ensure_topics(conn, settings.kafka.topic_names(), settings.kafka.topics, create=settings.kafka.create_topics)
    return conn


def client_config(settings: Settings, grpc: str) -> ClientConfig:
    t = settings.triton
    return ClientConfig(url=grpc, model_name=t.model_name, model_version=t.model_version, timeout_s=t.timeout_s,
                        segment_timeout_s=t.segment_timeout_s, retries=t.retries)  # fmt: skip


@contextlib.contextmanager
def on_sigterm(handler: Callable[[], None]) -> Iterator[None]:
    """Run ``handler`` on SIGTERM (a pod or service stop) while the block runs, from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def metrics_endpoint(settings: Settings, collector_factory: Callable[[], object]) -> Iterator[int | None]:
    """Serve ``/metrics`` while the block runs, when ``metrics.port`` is set; yields the bound port."""
    if settings.metrics.port is None:
        yield None
        return
    from pipeline.metrics import serve

    server, port = serve(collector_factory(), settings.metrics.address, settings.metrics.port)  # type: ignore[arg-type]
    log.info("metrics on http://%s:%d/metrics", settings.metrics.address, port)
    try:
        yield port
    finally:
        server.shutdown()  # type: ignore[attr-defined]


@contextlib.contextmanager
def progress_line(
    ingest_progress: Callable[[], dict], events: Callable[[], int] | None = None, total: int | None = None
) -> Iterator[tqdm]:
    """A live line: frames published, fps, frames waiting (lag), events so far."""
    stop = threading.Event()
    bar = tqdm(total=total, unit="frame", desc="streaming", dynamic_ncols=True)

    def loop() -> None:
        while not stop.wait(0.5):
            p = ingest_progress()
            bar.n = p["published"]
            post = {"fps": f"{p['fps']:.1f}", "lag": p["queued"], "dropped": p["dropped"]}
            if events is not None:
                post["events"] = events()
            bar.set_postfix(post, refresh=True)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield bar
    finally:
        stop.set()
        t.join()
        bar.close()
