"""The consumer side: per-camera tracking, event rules, exactly-once event publishing, the SQLite sink.

It imports from ``pipeline`` only what both sides share: the wire schemas (``pipeline.messages``),
the Kafka plumbing (``pipeline.kafka``), mask geometry (``pipeline.runmasks``), errors and path
checks. The ingest side never imports this package; ``pipeline/apps/wiring.py`` builds it for the
applications.
"""
