"""The bundled examples: every workflow validates, and its preview equals its golden file.

The golden files are `tidings preview --format json` of each example. After an intended change
of an example or of the preview, regenerate them and review the diff:

    TIDINGS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/examples
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings.cli.main import app
from tidings.compile.loader import load_workflows
from tidings.compile.templates import TemplateCatalog

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "preview"
REES46 = ROOT.parent / "shared" / "data" / "rees46_multicategory_2019-10-01_head.csv"
# An example with a sample event is a workflow example (others, e.g. the tracker page, are not).
EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/event.json"))
UPDATE = os.environ.get("TIDINGS_UPDATE_GOLDEN") == "1"
# The defaults, spelled out so that a developer's own settings cannot change a golden file.
ENV = {
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "TIDINGS_TEMPLATES_DIR": None,
    "TIDINGS_MAIL_FROM": "Tidings <no-reply@localhost>",
    "TIDINGS_SMS_SENDER": "Tidings",
    "TIDINGS_PUBLIC_URL": "http://127.0.0.1:8025",
    "TIDINGS_UPDATE_GOLDEN": None,  # the tests' switch, not a setting: settings refuse it
}


def preview_args(name: str) -> list[str]:
    args = ["preview", f"workflows/{name}.yaml", "--event", f"examples/{name}/event.json"]
    if (ROOT / "examples" / name / "contact.json").exists():
        args += ["--contact", f"examples/{name}/contact.json"]
    return args


def test_every_workflow_and_template_validates() -> None:
    report = load_workflows([ROOT / "workflows"], TemplateCatalog.load(ROOT / "templates"))

    assert [str(p) for p in report.problems] == []
    assert sorted(w.id for w in report.workflows) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_preview_equals_its_golden_file(name, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)

    result = CliRunner(env=ENV).invoke(
        app,
        [
            *preview_args(name),
            "--templates",
            "templates",
            "--out",
            str(tmp_path),
            "--format",
            "json",
        ],
    )

    assert result.exit_code == 0, result.output
    golden = GOLDEN / f"{name}.json"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(result.stdout, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}: run with TIDINGS_UPDATE_GOLDEN=1"
    assert result.stdout == golden.read_text(encoding="utf-8"), (
        "the preview changed: if that is intended, run with TIDINGS_UPDATE_GOLDEN=1 and review"
    )


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_sample_event_goes_a_way_that_sends(name) -> None:
    document = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))

    sent = [m for m in document["messages"] if m["sample"] and m["status"] != "error"]
    assert sent, f"the sample event of {name} sends nothing: it shows no message worth reading"
    assert document["notes"] == []  # e.g. "cart_updated does not trigger this workflow"


@pytest.mark.skipif(not REES46.exists(), reason=f"{REES46} is not there")
def test_the_demo_command_works_as_written(tmp_path) -> None:
    # The README's first command, run as written in a copy of the repository laid out as a
    # clone is (the data beside it, the virtualenv already set up by `scripts/setup`).
    repo = tmp_path / "main"
    for folder in ("scripts", "workflows", "templates", "mappings"):
        shutil.copytree(ROOT / folder, repo / folder)
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")  # its time: setup is done
    (repo / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")

    result = subprocess.run(
        ["bash", "scripts/demo"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    for workflow in ("abandoned_cart", "browse_abandonment", "order_confirmation"):
        assert f"\n{workflow} · " in result.stdout
    assert "subject: " in result.stdout  # rendered messages are shown, not only counted
    report = json.loads((repo / ".tidings" / "demo" / "report.json").read_text(encoding="utf-8"))
    files = list((repo / ".tidings" / "demo" / "outbox").glob("*.eml"))
    assert report["totals"]["refused"] == 0
    assert files and len(files) == report["totals"]["messages"]
