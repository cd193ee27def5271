"""`tidings schema`: the committed JSON Schema is current, accepts the good workflows, refuses typos."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from tidings.cli.main import app
from tidings.cli.schema import SCHEMA_ID, render_schema
from tidings.compile.yaml_marks import load_marked

ROOT = Path(__file__).parents[2]
COMMITTED = ROOT / "schemas" / "workflow.schema.json"
GOOD = sorted((ROOT / "tests" / "fixtures" / "workflows" / "good").iterdir())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, data: object) -> list[str]:
    """Every error message, including those nested under anyOf/oneOf alternatives."""
    found = list(validator.iter_errors(data))
    messages = []
    while found:
        error = found.pop()
        messages.append(error.message)
        found.extend(error.context or [])
    return sorted(messages)


def test_the_committed_schema_is_the_generated_one():
    assert COMMITTED.read_text(encoding="utf-8") == render_schema(), (
        "schemas/workflow.schema.json is stale: regenerate it with "
        "`.venv/bin/tidings schema --out schemas/workflow.schema.json`"
    )


def test_the_schema_names_its_dialect_and_id():
    schema = json.loads(render_schema())

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] == "Tidings workflow"


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_the_good_workflows_are_valid(validator, path):
    data = load_marked(path.read_text(encoding="utf-8"), str(path)).data

    assert errors(validator, data) == []


MINIMAL = {"id": "cart", "trigger": {"event": "cart_updated"}, "steps": [{"wait": "1h"}]}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"tigger": {"event": "x"}},
            "Additional properties are not allowed ('tigger' was unexpected)",
        ),
        ({"steps": [{"wiat": "1h"}]}, "{'wiat': '1h'} is not valid under any of the given schemas"),
        (
            {"mode": "sometimes"},
            "'sometimes' is not one of ['single', 'restart', 'queued', 'parallel']",
        ),
        ({"steps": []}, "[] should be non-empty"),
        (
            {"quiet_hours": {"start": "9pm", "end": "08:00"}},
            "'9pm' does not match '^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$'",
        ),
    ],
)
def test_typos_and_wrong_values_are_invalid(validator, change, expected):
    assert expected in errors(validator, {**MINIMAL, **change})


def test_an_unknown_key_inside_a_step_is_invalid(validator):
    data = {**MINIMAL, "steps": [{"send_email": {"template": "x", "subjet": "Hi"}}]}

    assert "Additional properties are not allowed ('subjet' was unexpected)" in errors(
        validator, data
    )


def test_the_loader_shorthands_are_valid(validator):
    data = {
        **MINIMAL,
        "trigger": {"event": "cart_updated", "if": "event.properties.total > 0"},
        "exit": {"event": "order_completed"},
        "steps": [
            {"wait": "1h"},
            {"wait": {"until": "09:00", "weekdays": "mon"}},
            {"if": "contact.VIP", "then": [{"exit": {"reason": "vip"}}]},
        ],
    }

    assert errors(validator, data) == []


def test_schema_prints_to_standard_output():
    result = CliRunner().invoke(app, ["schema"])

    assert result.exit_code == 0
    assert result.stdout == render_schema()


def test_schema_out_writes_the_file(tmp_path):
    out = tmp_path / "workflow.schema.json"

    result = CliRunner().invoke(app, ["schema", "--out", str(out)])

    assert result.exit_code == 0
    assert out.read_text(encoding="utf-8") == render_schema()
    assert result.stderr == f"wrote {out}\n"
