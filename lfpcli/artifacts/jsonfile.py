"""JSON artifacts (evaluation reports): the provenance record's fields at the top level plus the results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from lfpcli.artifacts.files import atomic_output
from lfpcli.artifacts.integrity import CHECKSUM_KEY, json_checksum
from lfpcli.artifacts.provenance import SCHEMA_VERSION, check_parents, jsonable
from lfpcli.errors import ArtifactError, InputError


def save_json_artifact(
    path: str | os.PathLike, record: Mapping[str, Any], body: Mapping[str, Any], *, force: bool = False
) -> None:
    payload = jsonable({k: v for k, v in {**record, **body}.items() if k != CHECKSUM_KEY})
    payload[CHECKSUM_KEY] = json_checksum(payload)
    with atomic_output(path, force) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=2) + "\n")


def load_json_artifact(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"file {p} does not exist")
    try:
        obj = json.loads(p.read_text())
    except (UnicodeDecodeError, ValueError):
        raise ArtifactError(f"{p} is not valid JSON") from None
    if not isinstance(obj, dict) or "kind" not in obj or "schema" not in obj:
        raise ArtifactError(f"{p} is JSON but not an lfp artifact (no kind/schema)")
    schema = obj["schema"]
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise ArtifactError(
            f"{p} has an invalid schema {schema!r} (this lfp reads schema 1..{SCHEMA_VERSION}); the file is damaged"
        )
    if schema > SCHEMA_VERSION:
        raise ArtifactError(f"{p} has schema {schema}; this lfp reads schema 1..{SCHEMA_VERSION}: upgrade lfp")
    if obj["kind"] != "eval":
        raise ArtifactError(
            f"{p} says it is a {obj['kind']!r} artifact, but lfp writes only eval reports as JSON; the file is damaged"
        )
    check_parents(obj, p)
    if schema >= 2 and obj.get(CHECKSUM_KEY) != json_checksum(obj):
        what = "has lost its checksum" if CHECKSUM_KEY not in obj else "does not match the checksum it was written with"
        raise ArtifactError(f"{p} {what}; the file is damaged or was edited")
    return obj
