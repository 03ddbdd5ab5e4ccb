"""Committed artefacts that must stay in step with the code: JSON Schemas, compose.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import schemas as s
from schemas.jsonschema_files import SCHEMA_DIR, render_all
from tests.samples import every_type

ROOT = Path(__file__).resolve().parents[2]


def test_json_schema_files_match_the_models() -> None:
    """The committed schema files equal what the models generate (run
    `python -m schemas.jsonschema_files` after changing a model)."""
    expected = render_all()
    committed = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert committed.keys() == expected.keys()
    drifted = [name for name in expected if committed[name] != expected[name]]
    assert drifted == []


@pytest.mark.parametrize("event", every_type(), ids=lambda e: e.type)
def test_encoded_records_validate_against_their_schema_file(event: s.Envelope) -> None:
    """What the codec writes is valid by the published JSON Schema of its type."""
    schema = json.loads((SCHEMA_DIR / f"{event.type}.json").read_text())
    jsonschema.validate(json.loads(s.encode(event)), schema)


def test_compose_file_is_valid_compose_spec() -> None:
    """compose.yaml validates against the official Compose Specification schema."""
    spec = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    jsonschema.Draft7Validator(spec).validate(compose)
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    assert "KAFKA_ZOOKEEPER_CONNECT" not in services["kafka"]["environment"]  # KRaft only
    assert "healthcheck" in services["clickhouse"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    commands = {name: svc.get("command", [])[1:2] for name, svc in services.items()}
    assert commands["serve"] == ["serve"]
    assert commands["worker"] == ["worker"]
