"""Kafka consumers that turn per-frame detections into events (tracking, zones, lines, alerts)."""
