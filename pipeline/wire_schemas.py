"""JSON Schema files of every wire type, generated from :mod:`pipeline.messages`.

Subscribers in any language validate records against these files (``schemas/`` in the
repository). They are generated, never edited: ``sparseinst-pipeline events schemas`` writes
them and ``--check`` (run by the tests) fails when the committed files differ from the models.

The event schema carries the shape of ``details`` per event type: one ``if type is T then
details is DETAILS[T]`` clause per type, so a validator checks the details as strictly as the
pydantic model does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline.messages import DETAILS, SCHEMA_VERSION, DeadLetter, Event, FrameDetections, ShadowResult

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://sparseinst-pipeline.dev/schemas/"

# file stem -> (model, topic it travels on, what it is)
WIRE_TYPES: dict[str, tuple[type[BaseModel], str, str]] = {
    "frame_detections": (FrameDetections, "detections", "the instances the model found in one frame"),
    "event": (Event, "events", "one analytics or rollout event"),
    "dead_letter": (DeadLetter, "<topic>.dead-letter", "a record a consumer could not use, with the reason"),
    "shadow_result": (ShadowResult, "rollout.shadow", "one frame answered by the live and the candidate version"),
}


def _details_name(event_type: str) -> str:
    return "details." + event_type


def schema_of(stem: str) -> dict[str, Any]:
    """The JSON Schema of one wire type (``stem`` a key of :data:`WIRE_TYPES`)."""
    model, topic, what = WIRE_TYPES[stem]
    schema = model.model_json_schema(mode="validation")
    schema = {"$schema": DRAFT, "$id": f"{BASE_ID}{stem}.schema.json",
              "description": f"{(model.__doc__ or '').strip().splitlines()[0]} Topic: {topic}; {what}.",
              **{k: v for k, v in schema.items() if k != "description"}}  # fmt: skip
    if model is Event:
        defs = schema.setdefault("$defs", {})
        clauses = []
        for event_type, details in DETAILS.items():
            sub = details.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
            defs.update(sub.pop("$defs", {}))
            name = _details_name(event_type)
            defs[name] = sub
            clauses.append({"if": {"properties": {"type": {"const": event_type}}, "required": ["type"]},
                            "then": {"properties": {"details": {"$ref": f"#/$defs/{name}"}}}})  # fmt: skip
        schema["allOf"] = clauses
        schema["x-schema-version"] = SCHEMA_VERSION
    return schema


def render(stem: str) -> str:
    return json.dumps(schema_of(stem), indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    """Write every wire type's schema into ``folder``; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem in WIRE_TYPES:
        path = folder / f"{stem}.schema.json"
        path.write_text(render(stem))
        paths.append(path)
    return paths


def stale_schemas(folder: Path) -> list[str]:
    """The schema files in ``folder`` that are missing or differ from the models (empty: all current)."""
    stale = []
    for stem in WIRE_TYPES:
        path = folder / f"{stem}.schema.json"
        if not path.is_file():
            stale.append(f"{path}: missing")
        elif path.read_text() != render(stem):
            stale.append(f"{path}: differs from pipeline.messages")
    return stale
