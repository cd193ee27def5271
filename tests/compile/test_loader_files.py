"""Loading many files: one bad file never hides another, ids are unique, results are compiled."""

from __future__ import annotations

import hashlib
from datetime import time, timedelta
from pathlib import Path

import pytest

from tidings.compile.loader import load_workflow, load_workflows, workflow_files
from tidings.compile.templates import TemplateCatalog
from tidings.model.workflow import UpdateContactStep, WaitStep

FIXTURES = Path(__file__).parents[1] / "fixtures" / "workflows"
GOOD = """\
id: {id}
trigger: {{event: cart_updated}}
steps:
  - wait: 1h
"""


@pytest.fixture(scope="module")
def catalog() -> TemplateCatalog:
    return TemplateCatalog.load(FIXTURES / "templates")


@pytest.fixture
def write(tmp_path: Path):
    """Write a file under tmp_path (creating folders) and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def test_the_good_fixtures_load_without_problems(catalog):
    report = load_workflows([FIXTURES / "good"], catalog)

    assert [str(p) for p in report.problems] == []
    assert (report.files, report.templates) == (3, 4)
    assert [w.id for w in report.workflows] == [
        "abandoned_cart",
        "lesson_reminder",
        "order_shipped",
    ]


def test_two_files_one_bad_the_good_one_still_loads(write, catalog, tmp_path):
    write("workflows/cart.yaml", GOOD.format(id="cart"))
    write(
        "workflows/welcome.yaml", "id: welcome\ntrigger: {event: signed_up}\nsteps:\n  - wiat: 1h\n"
    )

    report = load_workflows([tmp_path / "workflows"], catalog)

    assert [w.id for w in report.workflows] == ["cart"]
    assert [str(p) for p in report.problems] == [
        f"{tmp_path}/workflows/welcome.yaml:4:5: steps[0].wiat: unknown step 'wiat' "
        "(did you mean 'wait'?)"
    ]
    assert report.files == 2


def test_problems_of_every_bad_file_are_reported(catalog):
    report = load_workflows([FIXTURES / "bad"], catalog)

    assert [str(p).removeprefix(f"{FIXTURES}/bad/") for p in report.problems] == [
        "browse_abandonment.yaml:5:5: steps[0].wiat: unknown step 'wiat' (did you mean 'wait'?)",
        "browse_abandonment.yaml:6:28: steps[1].send_email.template: no email template named "
        "'abandond_cart' (did you mean 'abandoned_cart'?)",
        "welcome.yaml:3:6: invalid YAML: expected ',' or '}', but got ':' (while parsing a flow mapping)",
        "winback.yaml:9:20: steps[1].then[0].send_email.subject: syntax error: unexpected '}'",
    ]
    assert report.workflows == []


def test_folders_give_their_yaml_and_yml_files_sorted(write, tmp_path):
    b = write("wf/b.yml", "")
    a = write("wf/a.yaml", "")
    write("wf/notes.md", "")
    write("wf/sub/c.yaml", "")  # folders are not walked recursively
    single = write("other/z.yaml", "")

    files, problems = workflow_files([tmp_path / "wf", single, a])

    assert files == [a, b, single]
    assert problems == []


def test_a_missing_path_is_a_problem_and_the_others_still_load(write, catalog, tmp_path):
    good = write("cart.yaml", GOOD.format(id="cart"))

    report = load_workflows([tmp_path / "nope", good], catalog)

    assert [str(p) for p in report.problems] == [f"{tmp_path}/nope: no such file or directory"]
    assert [w.id for w in report.workflows] == ["cart"]


def test_an_id_used_twice_rejects_the_later_file(write, catalog, tmp_path):
    write("a/cart.yaml", GOOD.format(id="cart"))
    write("b/cart.yml", "# the same workflow, copied\n" + GOOD.format(id="cart"))

    report = load_workflows([tmp_path / "a", tmp_path / "b"], catalog)

    assert [w.source for w in report.workflows] == [tmp_path / "a" / "cart.yaml"]
    assert [str(p) for p in report.problems] == [
        f"{tmp_path}/b/cart.yml:2:5: id: id 'cart' is already used by {tmp_path}/a/cart.yaml"
    ]


def test_template_problems_are_reported_once_before_the_workflows(write, tmp_path):
    write("templates/broken.sms.txt", "Hi {{ contact.FIRSTNAME }\n")
    write("workflows/a.yaml", GOOD.format(id="a"))
    write("workflows/b.yaml", GOOD.format(id="b"))
    catalog = TemplateCatalog.load(tmp_path / "templates")
    assert len(catalog.problems) == 1

    report = load_workflows([tmp_path / "workflows"], catalog)

    assert report.problems == catalog.problems
    assert [w.id for w in report.workflows] == ["a", "b"]


def test_a_compiled_workflow_carries_version_conditions_and_history_use(catalog):
    path = FIXTURES / "good" / "abandoned_cart.yaml"

    result = load_workflow(path, catalog)

    compiled = result.workflow
    assert result.problems == []
    assert compiled is not None
    assert compiled.source == path
    assert compiled.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert sorted(compiled.conditions) == [
        "event.properties.cart_id == run.key",
        "event.properties.total > 0",
        'not has_event("unsubscribed", since=run.started_at)',
    ]
    assert compiled.uses_history is True
    assert compiled.definition.quiet_hours is not None
    assert compiled.definition.quiet_hours.end == time(8, 0)


def test_wait_date_is_compiled_with_the_conditions_and_yaml_surprises_are_avoided(catalog):
    result = load_workflow(FIXTURES / "good" / "lesson_reminder.yaml", catalog)

    compiled = result.workflow
    assert compiled is not None
    assert "event.properties.starts_at" in compiled.conditions
    assert compiled.uses_history is False
    wait, _, until, update, _ = compiled.definition.steps
    assert isinstance(wait, WaitStep) and isinstance(until, WaitStep)
    assert isinstance(update, UpdateContactStep)
    assert wait.wait.offset == timedelta(hours=-24)
    assert until.wait.until == time(9, 0)  # unquoted 09:00 in the file
    assert update.update_contact["COUNTRY"] == "no"  # not False, as YAML 1.1 would have it


def test_the_version_changes_with_any_edit(write, catalog):
    path = write("cart.yaml", GOOD.format(id="cart"))
    before = load_workflow(path, catalog).workflow
    path.write_text(GOOD.format(id="cart") + "# a comment\n", encoding="utf-8")

    after = load_workflow(path, catalog).workflow

    assert before is not None and after is not None
    assert before.version != after.version


def test_a_file_that_is_not_utf8_is_a_problem(tmp_path, catalog):
    path = tmp_path / "cart.yaml"
    path.write_bytes(b"id: cart\nname: caf\xe9\n")

    result = load_workflow(path, catalog)

    assert [str(p) for p in result.problems] == [f"{path}:2:10: not UTF-8 text (byte 0xe9)"]
    assert result.workflow is None
