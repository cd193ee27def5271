"""`tidings validate`: one problem per line, a summary, and an exit status scripts can trust."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings.cli.main import app

FIXTURES = Path(__file__).parents[1] / "fixtures" / "workflows"
TEMPLATES = str(FIXTURES / "templates")
# No colour even when the environment asks for it elsewhere: output must be plain when piped.
PLAIN = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TIDINGS_WORKFLOWS_DIR": None}


def invoke(*args: str):
    return CliRunner(env=PLAIN).invoke(app, list(args))


def test_valid_workflows_print_the_summary_and_exit_0():
    result = invoke("validate", str(FIXTURES / "good"), "--templates", TEMPLATES)

    assert result.stdout == "7 files (3 workflows, 4 templates), 0 problems\n"
    assert result.exit_code == 0


def test_each_problem_is_one_line_then_the_summary_and_exit_1():
    result = invoke("validate", str(FIXTURES / "bad"), "--templates", TEMPLATES)

    bad = FIXTURES / "bad"
    assert result.stdout.splitlines() == [
        f"{bad}/browse_abandonment.yaml:5:5: steps[0].wiat: unknown step 'wiat' (did you mean 'wait'?)",
        f"{bad}/browse_abandonment.yaml:6:28: steps[1].send_email.template: no email template named "
        "'abandond_cart' (did you mean 'abandoned_cart'?)",
        f"{bad}/welcome.yaml:3:6: invalid YAML: expected ',' or '}}', but got ':' (while parsing a flow mapping)",
        f"{bad}/winback.yaml:9:20: steps[1].then[0].send_email.subject: syntax error: unexpected '}}'",
        "7 files (3 workflows, 4 templates), 4 problems",
    ]
    assert "\x1b[" not in result.stdout
    assert result.exit_code == 1


def test_an_unknown_template_names_the_closest_one(tmp_path):
    workflow = tmp_path / "cart.yaml"
    workflow.write_text(
        "id: cart\ntrigger: {event: cart_updated}\nsteps:\n"
        "  - wait: 1h\n  - wait: 1d\n  - send_email:\n      template: abandond_cart\n"
    )

    result = invoke("validate", str(workflow), "--templates", TEMPLATES)

    assert result.stdout.splitlines() == [
        f"{workflow}:7:17: steps[2].send_email.template: no email template named 'abandond_cart' "
        "(did you mean 'abandoned_cart'?)",
        "5 files (1 workflow, 4 templates), 1 problem",
    ]
    assert result.exit_code == 1


def test_a_key_error_does_not_hide_the_other_problems_of_the_file(tmp_path):
    workflow = tmp_path / "cart.yaml"
    workflow.write_text(
        'id: cart\ntrigger: {evnt: x, if: "a >"}\n'
        "steps: [{send_email: {template: nope}}, {exit: done}, {wait: 1h}]\n"
    )

    result = invoke("validate", str(workflow), "--templates", TEMPLATES)

    assert result.stdout.splitlines() == [
        f"{workflow}:2:11: trigger.evnt: unknown key 'evnt' (did you mean 'event'?)",
        f"{workflow}:2:24: trigger.if: syntax error: unexpected 'end of template'",
        f"{workflow}:3:33: steps[0].send_email.template: no email template named 'nope' "
        "(expected a file nope.email.html in the templates folder)",
        f"{workflow}:3:55: steps[2]: unreachable: this step comes after 'exit' (line 3)",
        "5 files (1 workflow, 4 templates), 4 problems",
    ]
    assert result.exit_code == 1


def test_files_and_folders_can_be_mixed(tmp_path):
    result = invoke(
        "validate",
        str(FIXTURES / "good"),
        str(FIXTURES / "bad" / "winback.yaml"),
        "--templates",
        TEMPLATES,
    )

    assert result.stdout.splitlines()[-1] == "8 files (4 workflows, 4 templates), 1 problem"
    assert result.exit_code == 1


def test_template_problems_are_reported_too(tmp_path, monkeypatch):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hello.sms.txt").write_text("Hi {{ contact.FIRSTNAME\n")
    monkeypatch.chdir(tmp_path)

    result = invoke(
        "validate",
        str(FIXTURES / "good" / "order_shipped.yml"),
        "--templates",
        str(tmp_path / "templates"),
    )

    lines = result.stdout.splitlines()
    assert lines[0] == (
        "templates/hello.sms.txt:1:24: syntax error: unexpected end of template, expected "
        "'end of print statement'."
    )
    assert "steps[0].send_email.template: no email template named 'order_shipped'" in lines[1]
    assert lines[2:] == ["2 files (1 workflow, 1 template), 2 problems"]
    assert result.exit_code == 1


def test_a_template_outside_the_working_folder_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    templates = tmp_path / "x" / "tpl"
    templates.mkdir(parents=True)
    (templates / "broken.email.html").write_text(
        "---\nsubject: Hi\n---\n<p>\n  {{ contact.FIRSTNAME }</p>\n"
    )
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")

    result = invoke(
        "validate", str(FIXTURES / "good" / "order_shipped.yml"), "--templates", str(templates)
    )

    assert result.stdout.splitlines()[0] == (
        f"{templates}/broken.email.html:5:24: syntax error: unexpected '}}'"
    )
    assert Path(result.stdout.split(":")[0]).is_file()


def test_defaults_are_the_workflows_and_templates_folders(tmp_path, monkeypatch):
    shutil.copytree(FIXTURES / "good", tmp_path / "workflows")
    shutil.copytree(FIXTURES / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)

    result = invoke("validate")

    assert result.stdout == "7 files (3 workflows, 4 templates), 0 problems\n"
    assert result.exit_code == 0


def test_without_a_templates_folder_every_template_reference_is_reported(tmp_path, monkeypatch):
    shutil.copytree(FIXTURES / "good", tmp_path / "workflows")
    monkeypatch.chdir(tmp_path)

    result = invoke("validate")

    assert result.stdout.splitlines() == [
        "workflows/abandoned_cart.yaml:17:28: steps[1].send_email.template: no email template "
        "named 'abandoned_cart' (expected a file abandoned_cart.email.html in the templates folder)",
        "workflows/abandoned_cart.yaml:24:36: steps[2].wait_for.on_timeout[0].then[0].send_sms.template: "
        "no SMS template named 'abandoned_cart_sms' (expected a file abandoned_cart_sms.sms.txt in "
        "the templates folder)",
        "workflows/lesson_reminder.yaml:18:21: steps[1].else[0].send_email.template: no email "
        "template named 'lesson_reminder' (expected a file lesson_reminder.email.html in the "
        "templates folder)",
        "workflows/order_shipped.yml:7:17: steps[0].send_email.template: no email template named "
        "'order_shipped' (expected a file order_shipped.email.html in the templates folder)",
        "3 files, 4 problems",
    ]
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "no/such/path"], "no such file or folder: no/such/path"),
        (
            ["validate", str(FIXTURES / "good"), "--templates", "no/templates"],
            "no such folder: no/templates",
        ),
    ],
)
def test_a_missing_path_is_a_usage_error_with_exit_2(args, message):
    result = invoke(*args)

    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())  # Rich may wrap the usage box
    assert result.stdout == ""


def test_the_default_folder_missing_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    result = invoke("validate")

    assert result.exit_code == 2
    assert "no such file or folder: workflows" in result.stderr


def console_script() -> list[str]:
    """The installed `tidings` script next to this interpreter (what `pip install` put there)."""
    script = Path(sys.executable).parent / "tidings"
    assert script.exists(), f"no console script at {script}: run `pip install -e .`"
    return [str(script)]


@pytest.mark.parametrize(
    "command", [console_script(), [sys.executable, "-m", "tidings"]], ids=["script", "module"]
)
def test_the_installed_command_validates_and_sets_the_exit_status(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    bad = FIXTURES / "bad" / "browse_abandonment.yaml"

    good = subprocess.run(
        [*command, "validate", str(FIXTURES / "good"), "--templates", TEMPLATES],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    failing = subprocess.run(
        [*command, "validate", str(bad), "--templates", TEMPLATES],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )

    assert (good.returncode, good.stdout) == (0, "7 files (3 workflows, 4 templates), 0 problems\n")
    assert failing.returncode == 1
    assert failing.stdout.splitlines() == [
        f"{bad}:5:5: steps[0].wiat: unknown step 'wiat' (did you mean 'wait'?)",
        f"{bad}:6:28: steps[1].send_email.template: no email template named 'abandond_cart' "
        "(did you mean 'abandoned_cart'?)",
        "5 files (1 workflow, 4 templates), 2 problems",
    ]
