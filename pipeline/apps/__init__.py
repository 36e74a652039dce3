"""The runnable applications: ``run`` (ingest), ``consume`` (events and sink), composed from the parts.

``pipeline.apps.ingest`` never imports ``consumers``; ``pipeline.apps.consume`` composes them.
"""
