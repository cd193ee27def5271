"""YAML with marks: plain data, 1-based line:col of every key and value, and no 1.1 surprises."""

from __future__ import annotations

from datetime import date

import pytest

from tidings.compile.yaml_marks import fit_path, format_path, load_marked


def test_every_key_value_and_item_has_its_line_and_column():
    doc = load_marked("id: cart\nsteps:\n  - wait: 1h\n  - send_email: {template: x}\n", "f.yaml")

    assert doc.data == {"id": "cart", "steps": [{"wait": "1h"}, {"send_email": {"template": "x"}}]}
    assert doc.keys[("steps",)] == (2, 1)
    assert doc.values[("id",)] == (1, 5)
    assert doc.values[("steps", 0)] == (3, 5)
    assert doc.values[("steps", 1, "send_email", "template")] == (4, 28)
    assert doc.keys[("steps", 1, "send_email", "template")] == (4, 18)
    assert doc.problems == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("9:00", "9:00"),  # YAML 1.1 would say 540
        ("22:30", "22:30"),
        ("1:30:00", "1:30:00"),
        ("09:00", "09:00"),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("true", True),
        ("False", False),
        ("42", 42),
        ("-7", -7),
        ("0x1F", 31),
        ("1_000", 1000),
        ("1.5", 1.5),
        ("null", None),
        ("2024-05-01", date(2024, 5, 1)),
    ],
)
def test_scalars_resolve_without_yaml_1_1_surprises(text, value):
    assert load_marked(f"v: {text}\n", "f.yaml").data == {"v": value}


def test_a_duplicate_key_is_a_problem_at_the_second_one():
    doc = load_marked("a: 1\nb:\n  c: 1\n  c: 2\n", "f.yaml")

    assert [str(p) for p in doc.problems] == [
        "f.yaml:4:3: b.c: duplicate key 'c' (first written at line 3)"
    ]
    assert doc.data == {"a": 1, "b": {"c": 1}}


def test_a_merge_key_may_be_overridden_without_a_duplicate():
    doc = load_marked("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "f.yaml")

    assert doc.problems == []
    assert doc.data["m"] == {"x": 1, "y": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: b: c\n", "f.yaml:1:5: invalid YAML: mapping values are not allowed here"),
        (
            "a: [1,\n",
            "f.yaml:2:1: invalid YAML: expected the node content, but found '<stream end>' "
            "(while parsing a flow node)",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "f.yaml:2:1: invalid YAML: expected a single document in the stream, "
            "but found another document",
        ),
        ("a: &x [*x]\n", "f.yaml:1:4: a[0]: an alias refers to the node that contains it"),
        ("a: 1\nb: x\x07y\n", "f.yaml:2:5: invalid YAML: character #x0007 is not allowed"),
    ],
)
def test_syntax_errors_are_problems_with_line_and_column(text, expected):
    assert [str(p) for p in load_marked(text, "f.yaml").problems] == [expected]


def test_keys_keep_the_text_written():
    assert load_marked("true: 1\n2: b\n", "f.yaml").data == {"true": 1, "2": "b"}


def test_a_block_scalar_records_where_its_text_starts():
    doc = load_marked("a: |\n    x\n    y\n", "f.yaml")

    assert doc.values[("a",)] == (1, 4)
    assert doc.block_scalars[("a",)] == (2, 5)


def test_an_empty_document_is_none_without_problems():
    doc = load_marked("# only a comment\n", "f.yaml")

    assert doc.data is None
    assert doc.problems == []


def test_a_mark_falls_back_to_the_nearest_written_ancestor():
    doc = load_marked("trigger:\n  if: x > 1\n", "f.yaml")

    assert doc.mark(("trigger", "if", 0)) == (2, 7)
    assert fit_path(doc.data, ("trigger", "if", 0)) == ("trigger", "if")
    assert format_path(("steps", 2, "send_email", "template")) == "steps[2].send_email.template"
