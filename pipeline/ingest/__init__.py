"""Camera ingestion: sources, per-camera pacing and bounded queues, cross-camera batching."""
