"""Kafka consumers: per-camera tracking, event rules, exactly-once event publishing, sinks.

Imports ``pipeline.messages`` (and config/errors) only; nothing in ``pipeline`` imports this package
except the command line, which is where applications are assembled.
"""
