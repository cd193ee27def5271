"""Message templates: loading, rendering, escaping, header safety, located errors and limits."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tidings.compile.front_matter import parse_front_matter
from tidings.compile.templates import (
    _CONTROL,
    MAX_EMAIL_PART_CHARS,
    MAX_SMS_CHARS,
    TemplateCatalog,
    compile_inline,
    header_safe,
)
from tidings.errors import TemplateError, UndefinedVariableError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "templates"
NOW = datetime(2025, 3, 5, 18, 0, tzinfo=UTC)

WriteTemplates = Callable[[dict[str, str | bytes]], TemplateCatalog]


def make_context(**overrides: Any) -> dict[str, Any]:
    """A render context as the engine builds it; keyword arguments replace whole entries."""
    properties: dict[str, Any] = {
        "cart_id": "c-42",
        "cart_url": "https://shop.example/cart/c-42",
        "currency": "EUR",
        "total": "14.50",
        "items": [
            {"name": "Red shoe", "price": "12.50"},
            {"name": "Blue sock", "price": 2},
        ],
        "order_id": "A-1001",
        "eta": "2025-03-07",
    }
    properties.update(overrides.pop("properties", {}))
    contact = {"email": "ann@example.com", "FIRSTNAME": "Ann", "timezone": "Europe/Paris"}
    contact.update(overrides.pop("contact", {}))
    context: dict[str, Any] = {
        "contact": contact,
        "event": {"name": "cart_updated", "date": NOW, "properties": properties},
        "params": properties,
        "run": {"id": "r-1", "key": "c-42", "started_at": NOW, "workflow": "abandoned_cart"},
        "unsubscribe_url": "https://t.example/u/abc",
        "now": NOW,
    }
    context.update(overrides)
    return context


@pytest.fixture
def catalog() -> TemplateCatalog:
    return TemplateCatalog.load(FIXTURES)


@pytest.fixture
def write_templates(tmp_path: Path) -> WriteTemplates:
    """Write files under a fresh `templates/` folder and load it."""

    def write(files: dict[str, str | bytes]) -> TemplateCatalog:
        root = tmp_path / "templates"
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return TemplateCatalog.load(root)

    return write


# ---------------------------------------------------------------------------- loading


def test_the_fixture_templates_load_without_problems(catalog: TemplateCatalog) -> None:
    assert catalog.problems == []
    assert catalog.email_names() == ["abandoned_cart", "order_shipped"]
    assert catalog.sms_names() == ["abandoned_cart"]
    assert catalog.has_email("abandoned_cart")
    assert not catalog.has_email("layouts/base")  # a layout is not a message
    assert catalog.has_sms("abandoned_cart")
    assert not catalog.has_sms("order_shipped")


def test_templates_in_subfolders_are_named_by_their_path(write_templates: WriteTemplates) -> None:
    catalog = write_templates({"shop/cart.email.html": "---\nsubject: Hi\n---\nHi"})
    assert catalog.email_names() == ["shop/cart"]
    assert catalog.render_email("shop/cart", make_context()).subject == "Hi"


def test_a_missing_folder_is_an_empty_catalog(tmp_path: Path) -> None:
    catalog = TemplateCatalog.load(tmp_path / "nowhere")
    assert catalog.problems == []
    assert catalog.email_names() == []
    assert catalog.render_inline("{{ run.key }}", make_context()) == "c-42"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"a.email.html": "---\nsubject: Hi\n---\n<p>\n{% if x %}\n</p>\n"},
            ["templates/a.email.html:6:5: syntax error: Unexpected end of template. Jinja "
             "was looking for the following tags: *. The innermost block that needs to be "
             "closed is 'if'."],
        ),
        (
            {"a.sms.txt": "Hello\n{{ contact.FIRSTNAME }\n"},
            ["templates/a.sms.txt:2:22: syntax error: unexpected '}'"],
        ),
        (
            {"a.email.html": "---\nsubject: Hi {{ contact.NAME\n---\n<p>x</p>"},
            ["templates/a.email.html:2:28: subject: syntax error: unexpected end of template, "
             "expected 'end of print statement'."],
        ),
        (
            {"a.email.html": "---\nsubject: Hi\n---\n<p>{{ contct.NAME }}</p>"},
            ["templates/a.email.html:4:7: unknown variable 'contct' (known: contact, event, "
             "params, run, unsubscribe_url, now, subject, preheader)"],
        ),
        (
            {"a.email.html": "---\npreheader: x\n---\n<p>x</p>"},
            ["templates/a.email.html:1:1: front matter has no 'subject'"],
        ),
        (
            {"a.email.html": "---\nsubject: ''\n---\n<p>x</p>"},
            ["templates/a.email.html:2:1: 'subject' is empty"],
        ),
        (
            {"a.email.html": "<p>no front matter</p>"},
            ["templates/a.email.html:1:1: expected front matter between '---' lines"],
        ),
        (
            {"a.email.html": "---\nsubject: Hi\n<p>x</p>"},
            ["templates/a.email.html:1:1: front matter opened with '---' is never closed"],
        ),
        (
            {"a.email.html": "---\nsubject: Hi\nfrom: x@y\nsubject: Again\njunk\n---\n<p>x</p>"},
            ["templates/a.email.html:3:1: unknown key 'from' (expected one of subject, preheader)",
             "templates/a.email.html:4:1: 'subject' given twice (first on line 2)",
             "templates/a.email.html:5:1: expected 'key: value', found 'junk'"],
        ),
        (
            {"a.email.txt": "text only"},
            ["templates/a.email.txt: text part without an HTML part 'a.email.html'"],
        ),
        (
            {"a.email.html": "---\nsubject: Hi\n---\n\n{% extends 'layouts/nope.html' %}"},
            ["templates/a.email.html:5:13: no template named 'layouts/nope.html'"],
        ),
        (
            {"a.email.html": "---\nsubject: Hi\n---\n{% extends 'base.html' %}",
             "base.html": "<html>\n{% block content %}\n</html>"},
            ["templates/base.html:3:8: syntax error: Unexpected end of template. Jinja was "
             "looking for the following tags: *. The innermost block that needs to be "
             "closed is 'block'."],
        ),
        (
            {"a.sms.txt": b"caf\xe9"},
            ["templates/a.sms.txt: expected UTF-8 text"],
        ),
    ],
)  # fmt: skip
def test_broken_files_are_problems_located_to_file_line_and_column(
    write_templates: WriteTemplates,
    files: dict[str, str | bytes],
    expected: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the files are named from here: `templates/...`
    catalog = write_templates(files)
    # Jinja lists the tags it expected from a set, in no stable order: match them with `*`
    problems = [
        re.sub(r"following tags: [^.]*\.", "following tags: *.", str(p)) for p in catalog.problems
    ]
    assert problems == expected


def test_a_problem_names_a_path_one_can_open_from_the_working_folder(
    write_templates: WriteTemplates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    catalog = write_templates({"shop/a.sms.txt": "Hi {{ contact.FIRSTNAME }"})

    assert [str(p) for p in catalog.problems] == [
        f"{tmp_path}/templates/shop/a.sms.txt:1:25: syntax error: unexpected '}}'"
    ]
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in write_templates({}).problems] == [
        "templates/shop/a.sms.txt:1:25: syntax error: unexpected '}'"
    ]


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("{{ a }} {{ b }", 14),  # the second `}`-less print, not the first
        ("{% if a %}x{% endif %} {{ a b }}", 29),  # after a block on the line
        ("  {%- if a %}\n{% foo %}", 4),  # an unknown tag: its name, on the second line
        ('{{ "abc }}', 4),  # a lexer error: where the unreadable text starts
        ("{% for x in y %}\n{{ x }}", 8),  # the end of the template: past the last line's text
    ],
)
def test_a_syntax_error_points_at_the_token_that_stopped_jinja(
    write_templates: WriteTemplates, source: str, column: int
) -> None:
    [problem] = write_templates({"a.sms.txt": source}).problems

    assert problem.location.column == column


def test_one_broken_template_does_not_hide_the_others(write_templates: WriteTemplates) -> None:
    catalog = write_templates(
        {
            "bad.email.html": "---\nsubject: Hi\n---\n{% for %}",
            "good.email.html": "---\nsubject: Hi {{ contact.FIRSTNAME }}\n---\n<p>ok</p>",
        }
    )
    assert [Path(p.location.file).name for p in catalog.problems] == ["bad.email.html"]
    assert catalog.has_email("bad")  # it exists, so the loader reports no 'missing template'
    assert catalog.render_email("good", make_context()).subject == "Hi Ann"
    with pytest.raises(TemplateError, match=r"^templates/bad\.email\.html: template has errors"):
        catalog.render_email("bad", make_context())


def test_front_matter_lines_are_blanked_so_lines_stay_file_lines() -> None:
    front = parse_front_matter("---\nsubject: 'Hi {{ x }}'\npreheader: Pre\n---\n<p>Body</p>\n")
    assert front.fields == {"subject": ("Hi {{ x }}", 2), "preheader": ("Pre", 3)}
    assert front.body == "\n\n\n\n<p>Body</p>\n"
    assert front.problems == []


# ---------------------------------------------------------------------------- rendering


def test_an_email_renders_through_its_layout(catalog: TemplateCatalog) -> None:
    email = catalog.render_email("abandoned_cart", make_context())
    assert email.subject == "Ann, you left something behind"
    assert email.preheader == "2 items are waiting in your cart"
    assert email.html.startswith("<!doctype html>")
    assert "<title>Ann, you left something behind</title>" in email.html
    assert '<div style="display:none">2 items are waiting in your cart</div>' in email.html
    assert "<li>Red shoe — €12.50</li>" in email.html
    assert "<li>Blue sock — €2.00</li>" in email.html
    assert '<a href="https://t.example/u/abc">Unsubscribe</a>' in email.html


def test_the_text_part_is_derived_from_the_html_when_absent(catalog: TemplateCatalog) -> None:
    email = catalog.render_email("abandoned_cart", make_context())
    assert email.text == (
        "Hello Ann,\n\n"
        "You left these in your cart:\n\n"
        "- Red shoe — €12.50\n"
        "- Blue sock — €2.00\n\n"
        "Total: €14.50\n\n"
        "Back to your cart (https://shop.example/cart/c-42)\n\n"
        "Tidings Shop, 1 Main Street\n"
        "Unsubscribe (https://t.example/u/abc)"
    )


def test_a_hand_written_text_part_wins(catalog: TemplateCatalog) -> None:
    email = catalog.render_email("order_shipped", make_context(contact={"FIRSTNAME": "Zoé"}))
    assert email.subject == "Your order A-1001 is on its way"
    assert email.preheader is None
    # 18:00 UTC is 19:00 in the contact's zone (Europe/Paris)
    assert email.text == (
        "Hello Zoé,\n\nYour order A-1001 shipped on 05 March 2025 at 19:00.\n\n"
        "Unsubscribe: https://t.example/u/abc"
    )
    assert "arrives Friday." in email.html


def test_an_empty_preheader_is_no_preheader(write_templates: WriteTemplates) -> None:
    catalog = write_templates(
        {"a.email.html": "---\nsubject: Hi\npreheader: {{ params.get('teaser', '') }}\n---\nx"}
    )
    assert catalog.render_email("a", make_context()).preheader is None
    context = make_context(properties={"teaser": "New in store"})
    assert catalog.render_email("a", context).preheader == "New in store"


def test_no_unsubscribe_url_means_no_footer_link(catalog: TemplateCatalog) -> None:
    email = catalog.render_email("abandoned_cart", make_context(unsubscribe_url=None))
    assert "Unsubscribe" not in email.html
    assert email.text.endswith("Tidings Shop, 1 Main Street")


def test_data_is_escaped_in_html_but_raw_in_subject_and_text(catalog: TemplateCatalog) -> None:
    context = make_context(contact={"FIRSTNAME": "<script>alert(1)</script>"})
    email = catalog.render_email("abandoned_cart", context)
    assert "<script>" not in email.html
    assert "<h1>Hello &lt;script&gt;alert(1)&lt;/script&gt;,</h1>" in email.html
    assert email.subject == "<script>alert(1)</script>, you left something behind"
    assert email.text.startswith("Hello <script>alert(1)</script>,")
    assert catalog.render_sms("abandoned_cart", context).startswith("<script>alert(1)</script>,")


def test_template_syntax_in_data_is_printed_literally(catalog: TemplateCatalog) -> None:
    context = make_context(
        contact={"FIRSTNAME": "{{ 7*7 }}"},
        properties={"items": [{"name": "{% for x in range(3) %}x{% endfor %}", "price": 1}]},
    )
    email = catalog.render_email("abandoned_cart", context)
    assert email.subject == "{{ 7*7 }}, you left something behind"
    assert "Hello {{ 7*7 }}," in email.html
    assert "{% for x in range(3) %}x{% endfor %}" in email.html
    assert "49" not in email.html + email.text + email.subject
    assert catalog.render_sms("abandoned_cart", context).startswith("{{ 7*7 }}, your cart")


@pytest.mark.parametrize(
    "name",
    ["Ann\r\nBcc: victim@example.com", "Ann\nBcc: victim@example.com", "Ann\x00\x0b\u2028Bcc:"],
)
def test_line_breaks_in_data_never_reach_the_subject(catalog: TemplateCatalog, name: str) -> None:
    email = catalog.render_email("abandoned_cart", make_context(contact={"FIRSTNAME": name}))
    assert "\r" not in email.subject and "\n" not in email.subject
    assert email.subject.startswith("Ann Bcc:")


def test_a_subject_override_is_a_template_and_header_safe(catalog: TemplateCatalog) -> None:
    context = make_context(contact={"FIRSTNAME": "Ann\r\nX-Evil: 1"})
    email = catalog.render_email(
        "abandoned_cart", context, subject="Last call, {{ contact.FIRSTNAME }}"
    )
    assert email.subject == "Last call, Ann X-Evil: 1"
    assert "<title>Last call, Ann X-Evil: 1</title>" in email.html


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a\r\nb", "a b"), ("a\tb", "a b"), ("  a \n\n b ", "a   b"), ("é€", "é€")],
)
def test_header_safe(value: str, expected: str) -> None:
    assert header_safe(value) == expected


def test_a_printable_header_has_nothing_to_collapse() -> None:
    """`header_safe` passes printable text through stripped only: every character it collapses
    is one Python calls unprintable; unprintable text still collapses as before."""
    collapsed = _CONTROL.findall("".join(map(chr, range(sys.maxunicode + 1))))
    assert not any(character.isprintable() for run in collapsed for character in run)
    assert header_safe(" a\xa0b\u2028c\x85d ") == "a\xa0b c d"


def test_an_sms_renders_as_plain_text(catalog: TemplateCatalog) -> None:
    context = make_context(properties={"currency": "USD", "total": 1234})
    assert catalog.render_sms("abandoned_cart", context) == (
        "Ann, your cart ($1,234.00) is waiting: https://shop.example/cart/c-42"
    )


def test_inline_templates_are_not_escaped(catalog: TemplateCatalog) -> None:
    context = make_context(properties={"cart_id": "<b>&"})
    assert catalog.render_inline("{{ event.properties.cart_id }}", context) == "<b>&"
    assert catalog.render_inline("{{ event.properties.cart_id }}", context) == "<b>&"  # cached


# ---------------------------------------------------------------------------- errors


def test_a_missing_variable_names_the_variable_and_the_line(catalog: TemplateCatalog) -> None:
    context = make_context()
    del context["contact"]["FIRSTNAME"]
    with pytest.raises(UndefinedVariableError) as caught:
        catalog.render_email("abandoned_cart", context)
    error = caught.value
    assert (error.template, error.line, error.variable) == (
        "templates/abandoned_cart.email.html",
        2,  # the subject, in the front matter, fails first
        "contact.FIRSTNAME",
    )
    assert str(error) == (
        "templates/abandoned_cart.email.html:2: undefined variable 'contact.FIRSTNAME'"
    )


def test_a_missing_variable_in_the_body_is_located_in_the_body(catalog: TemplateCatalog) -> None:
    context = make_context()
    del context["event"]["properties"]["total"]
    with pytest.raises(UndefinedVariableError) as caught:
        catalog.render_email("abandoned_cart", context)
    assert str(caught.value) == (
        "templates/abandoned_cart.email.html:12: undefined variable 'event.properties.total'"
    )


def test_an_error_in_a_layout_names_the_layout(write_templates: WriteTemplates) -> None:
    catalog = write_templates(
        {
            "a.email.html": "---\nsubject: Hi\n---\n{% extends 'base.html' %}",
            "base.html": "<html>\n<body>\n{{ contact.NICKNAME }}\n</body></html>",
        }
    )
    with pytest.raises(UndefinedVariableError) as caught:
        catalog.render_email("a", make_context())
    assert str(caught.value) == "templates/base.html:3: undefined variable 'contact.NICKNAME'"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("\n{{ 1 / 0 }}", "templates/a.sms.txt:2: ZeroDivisionError: division by zero"),
        ("\n\n{{ ''.__class__ }}", "templates/a.sms.txt:3: refused by the sandbox: access to "
         "attribute '__class__' of 'str' object is unsafe."),
        ("{{ contact.email | money }}", "templates/a.sms.txt:1: ValueError: money: expected a "
         "number, found 'ann@example.com'"),
        ("{% include contact.email %}", "templates/a.sms.txt:1: no template named "
         "'ann@example.com'"),
    ],
)  # fmt: skip
def test_every_render_failure_is_a_located_template_error(
    write_templates: WriteTemplates, body: str, message: str
) -> None:
    catalog = write_templates({"a.sms.txt": body})
    assert catalog.problems == []
    with pytest.raises(TemplateError) as caught:
        catalog.render_sms("a", make_context())
    assert str(caught.value) == message


def test_unknown_names_are_template_errors(catalog: TemplateCatalog) -> None:
    with pytest.raises(TemplateError, match=r"^templates/nope\.email\.html: no email template"):
        catalog.render_email("nope", make_context())
    with pytest.raises(TemplateError, match=r"^templates/nope\.sms\.txt: no SMS template"):
        catalog.render_sms("nope", make_context())


def test_rendered_output_is_capped(write_templates: WriteTemplates) -> None:
    line = "x" * 99 + "\n"
    catalog = write_templates(
        {
            "big.email.html": "---\nsubject: Hi\n---\n{% for i in range(6000) %}"
            + line
            + "{% endfor %}",
            "big.sms.txt": "{% for i in range(50) %}" + line + "{% endfor %}",
            "ok.sms.txt": "{% for i in range(40) %}" + line + "{% endfor %}",
        }
    )
    assert MAX_EMAIL_PART_CHARS < 6000 * 100
    assert 40 * 100 <= MAX_SMS_CHARS < 50 * 100
    with pytest.raises(TemplateError, match=r"^templates/big.email.html: output exceeds 524,288"):
        catalog.render_email("big", make_context())
    with pytest.raises(TemplateError, match=r"^templates/big.sms.txt: output exceeds 4,096"):
        catalog.render_sms("big", make_context())
    assert len(catalog.render_sms("ok", make_context())) == 40 * 100 - 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ event.properties.cart_id }", "steps[0].key:1: syntax error: unexpected '}'"),
        ("ok\n{% if %}", "steps[0].key:2: syntax error: Expected an expression, got 'end of statement block'"),
        ("{{ evnt.name }}", "steps[0].key:1: unknown variable 'evnt' (known: contact, event, "
         "params, run, unsubscribe_url, now)"),
    ],
)  # fmt: skip
def test_compile_inline_reports_the_line(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_inline(source, name="steps[0].key")
    assert str(caught.value) == message


def test_compile_inline_accepts_a_good_template() -> None:
    compile_inline("{{ event.properties.cart_id }}-{{ run.key | upper }}")


def test_an_inline_runtime_error_names_the_inline_template(catalog: TemplateCatalog) -> None:
    with pytest.raises(UndefinedVariableError) as caught:
        catalog.render_inline("{{ event.properties.nope }}", make_context(), name="key")
    assert str(caught.value) == "key:1: undefined variable 'event.properties.nope'"
