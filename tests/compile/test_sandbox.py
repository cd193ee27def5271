"""The sandbox: what a template can never reach, and how data is read."""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import jinja2
import pytest
from jinja2.exceptions import SecurityError

from tidings.compile.sandbox import (
    MAX_RANGE,
    MAX_SIZE,
    ContextHelpers,
    describe,
    make_environment,
    undefined_variable,
    unknown_names,
)


def render(source: str, **context: Any) -> str:
    """Render `source` in the Tidings sandbox with `context`."""
    return make_environment().from_string(source).render(context)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__.mro() }}",
        "{{ x.__init__.__globals__ }}",
        "{{ (x|attr('__class__')) }}",
        "{{ x['__class__'] }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ self.__init__.__globals__['__builtins__']['open']('/etc/passwd').read() }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ f.__code__ }}",
        "{{ f.__closure__ }}",
        "{{ data.update({'a': 1}) }}",
        "{{ items.append(1) }}",
        "{{ items.pop() }}",
        "{{ data.setdefault('a', 1) }}",
        "{{ range(10**9) | list | length }}",
        "{{ range(MAXR + 1) | list | length }}",
        "{{ 'a' * 10**9 }}",
        "{{ [0] * 10**9 }}",
        "{{ 9**(9**9) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '%*d' % (999999999, 1) }}",
        "{{ 'a'.ljust(10**9) }}",
        "{{ 'a'.center(10**9) }}",
        "{{ 'a'.zfill(10**9) }}",
        "{{ 'a' | center(10**9) }}",
        "{{ 'a' | indent(10**9) }}",
    ],
)
def test_escapes_and_allocation_bombs_are_refused(source: str) -> None:
    def f() -> None:
        return None

    context = {"x": "s", "data": {"k": 1}, "items": [1, 2], "f": f, "MAXR": MAX_RANGE}
    with pytest.raises(SecurityError):
        render(source, **context)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ range(3) | list }}", "[0, 1, 2]"),
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{{ 6 * 7 }}", "42"),
        ("{{ 2 ** 10 }}", "1024"),
        ("{{ '%05.1f' % 3.14159 }}", "003.1"),
        ("{{ '%d items' % 2000000 }}", "2000000 items"),  # a big value is not a big width
        ("{{ 10 % 3 }}", "1"),
        ("{{ 'a'.ljust(3) }}|", "a  |"),
        ("{{ 'a' | center(5) }}|", "  a  |"),
        ("{{ 'x\ny' | indent(2) }}", "x\n  y"),
        ("{{ '{} items'.format(3) }}", "3 items"),
    ],
)
def test_ordinary_uses_of_guarded_operations_still_work(source: str, expected: str) -> None:
    assert render(source) == expected


def test_the_limits_are_round_numbers_a_message_never_needs() -> None:
    assert render("{{ range(n) | list | length }}", n=MAX_RANGE) == str(MAX_RANGE)
    assert render("{{ ('a' * n) | length }}", n=MAX_SIZE) == str(MAX_SIZE)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ p.items | join(',') }}", "a,b"),  # the key, not dict.items
        ("{{ p.keys }}", "k"),
        ("{{ p['items'] | join(',') }}", "a,b"),
        ("{% for k, v in q.items() %}{{ k }}={{ v }}{% endfor %}", "x=1"),  # no key: the method
        ("{{ c.FIRSTNAME }}", "Ann"),
        ("{{ c.missing | default('there') }}", "there"),
        ("{{ c.missing is defined }}", "False"),
    ],
)
def test_mapping_keys_win_over_dict_methods(source: str, expected: str) -> None:
    context = {"p": {"items": ["a", "b"], "keys": "k"}, "q": {"x": 1}, "c": {"FIRSTNAME": "Ann"}}
    assert render(source, **context) == expected


def test_mapping_keys_win_on_mappings_that_are_not_dicts_too() -> None:
    # Plain dicts take a shorter path than other mappings; both read the key first.
    proxy = MappingProxyType({"items": ["a", "b"]})
    assert render("{{ p.items | join(',') }}", p=proxy) == "a,b"
    assert render("{{ p.items | join(',') }}", p=OrderedDict(items=["c"])) == "c"


def test_data_cannot_be_mutated_by_a_template() -> None:
    data = {"items": [1, 2]}
    with pytest.raises(SecurityError):
        render("{{ d['items'].append(3) }}", d=data)
    assert data == {"items": [1, 2]}


@pytest.mark.parametrize(
    ("source", "variable"),
    [
        ("{{ nobody }}", "nobody"),
        ("{{ c.FIRSTNAME }}", "FIRSTNAME"),
        ("{{ c['FIRSTNAME'] }}", "FIRSTNAME"),
        ("{{ c.FIRSTNAME ~ '' }}", "FIRSTNAME"),
    ],
)
def test_missing_variables_are_errors_that_name_them(source: str, variable: str) -> None:
    with pytest.raises(jinja2.UndefinedError) as caught:
        render(source, c={})
    assert undefined_variable(caught.value) == variable
    assert describe(caught.value) == f"undefined variable {variable!r}"


def test_lipsum_is_not_offered() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("{{ lipsum() }}")


def test_unknown_names_lists_typos_with_their_line() -> None:
    env = make_environment()
    tree = env.parse(
        "{% set total = 1 %}\n{{ contact.NAME }} {{ total }}\n"
        "{% for i in items %}{{ loop.index }}{{ i }}{% endfor %}\n{{ evnt.name }}"
    )
    assert unknown_names(tree, ["contact", "event"]) == [("items", 3), ("evnt", 4)]


def test_a_template_reads_the_environment_globals_as_compiled() -> None:
    env = make_environment()
    template = env.from_string("{{ range(2) | list }} {{ extra }}", globals={"extra": "own"})
    assert template.render() == "[0, 1] own"
    # Globals are a snapshot taken when the template is compiled: make_environment completes
    # them first, and each render is spared Jinja's copy of a ChainMap.
    env.globals["extra"] = "changed later"
    env.globals["late"] = 1
    assert template.render() == "[0, 1] own"
    assert "late" not in template.globals


def test_a_template_global_cannot_reach_the_environment() -> None:
    env = make_environment()
    env.from_string("", globals={"extra": "own"})
    assert "extra" not in env.globals
    assert "lipsum" not in env.from_string("").globals


class _Helpers(ContextHelpers):
    """Helpers the sandbox calls straight away, as the engine's history helpers."""

    def count(self, name: str, *, within: Any = None, where: Any = None) -> str:
        return f"{name}/{within}/{where}"

    def stop(self) -> str:
        raise StopIteration


class _Plain:
    """The same methods on an ordinary object: through Jinja's own checks."""

    count = _Helpers.count
    stop = _Helpers.stop


@pytest.mark.parametrize(
    "source",
    [
        "{{ count('viewed', within='1d', where={'product_id': 7}) }}",
        "{% for n in ['a', 'b'] %}{{ count(n, within=n) }} {% endfor %}",
        "{% set x = 'c' %}{% for n in [x] %}{% set y = n %}{{ count(y) }}{% endfor %}",
        "{% macro m(v) %}{{ count(v) }}{% endmacro %}{{ m('d') }}",
        "{% if count('e') %}yes{% endif %}",
    ],
)
def test_context_helpers_answer_as_through_jinjas_checks(source: str) -> None:
    helpers, plain = _Helpers(), _Plain()
    fast = render(source, count=helpers.count)
    assert fast == render(source, count=plain.count)
    assert fast.strip()


def test_a_context_helper_raising_stop_iteration_is_undefined_as_through_jinja() -> None:
    for owner in (_Helpers(), _Plain()):
        with pytest.raises(jinja2.UndefinedError, match="StopIteration"):
            render("{{ stop() }}", stop=owner.stop)
        assert render("{{ stop() is undefined }}", stop=owner.stop) == "True"
