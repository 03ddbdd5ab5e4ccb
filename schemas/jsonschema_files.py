"""JSON Schema files for every record type, generated from the models.

``python -m schemas.jsonschema_files`` rewrites ``schemas/jsonschema/``; a unit test
fails when the committed files drift from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.codec import MODELS

__all__ = ["SCHEMA_DIR", "render_all", "write_all"]

SCHEMA_DIR = Path(__file__).parent / "jsonschema"


def render_all() -> dict[str, str]:
    """File name -> file text, for every record type."""
    files: dict[str, str] = {}
    for type_, model in sorted(MODELS.items()):
        schema: dict[str, Any] = model.model_json_schema()
        schema["$id"] = f"https://errorflow.dev/schemas/{type_}.json"
        schema["x-schema-version"] = model.SCHEMA_VERSION
        files[f"{type_}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into ``directory``, removing stale ones."""
    directory.mkdir(parents=True, exist_ok=True)
    files = render_all()
    for stale in directory.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        sys.stdout.write(f"{path}\n")
