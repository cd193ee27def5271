"""The one Jinja environment Tidings renders with: sandboxed, immutable, strict, with our filters.

Templates are written by authors but fed with data from the outside world, so the environment is
`ImmutableSandboxedEnvironment` (no attribute walks to `__class__`/`__globals__`/`mro`, no
unsafe callables, no mutation of the data passed in) with `StrictUndefined` (a missing variable
is an error, never an empty string).

`trim_blocks` and `lstrip_blocks` are on: a line holding only a `{% tag %}` leaves no blank
line behind, which is what text parts and SMS need (and HTML does not mind).

On top of Jinja's sandbox:
- Mapping attribute access prefers keys: `event.properties.items` is the event's `items`
  property, not `dict.items`; methods are still reachable when no such key exists.
- Allocation bombs are refused: `range()` is capped at `MAX_RANGE` items; `*` on strings and
  lists, `**`, `%`-formatting and the padding methods/filters (`center`, `ljust`, `indent`...)
  are refused past `MAX_SIZE` items/characters. Output size is capped by the renderer
  (`tidings.compile.templates`), not here. A template can still loop for long over nested
  `range()`s; authors are reviewed, data cannot create loops.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from types import MethodType
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_indent
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tidings.compile.filters import FILTERS

MAX_RANGE = 10_000
"""Most items `range()` may produce in a template."""

MAX_SIZE = 1_000_000
"""Most characters or items one operation (`*`, `**`, `%`, padding) may produce."""

_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _check_size(size: int, what: str) -> None:
    if size > MAX_SIZE:
        raise SecurityError(f"{what} would produce {size:,} items; the limit is {MAX_SIZE:,}")


def _safe_range(*args: int) -> range:
    """`range()` refusing more than MAX_RANGE items."""
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise SecurityError(f"range() of {len(result):,} items; the limit is {MAX_RANGE:,}")
    return result


def _multiply(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int):
            _check_size(len(sequence) * count, "'*' on a sequence")
    return operator.mul(left, right)


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        # Digits of base**exponent ~ exponent * log10(base); refuse before computing.
        _check_size(exponent * len(str(abs(base))), "'**'")
    return operator.pow(base, exponent)


_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)")


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        # Only widths allocate: literal ones ("%9999999d") and `*` ones taken from the values.
        values = right if isinstance(right, tuple) else (right,)
        for width in _PRINTF_WIDTH.findall(left):
            if width != "*":
                _check_size(int(width), "'%' formatting")
                continue
            for value in values:
                if isinstance(value, int) and not isinstance(value, bool):
                    _check_size(value, "'%' formatting")
    return operator.mod(left, right)


def _center(value: str, width: int = 80) -> str:
    _check_size(width, "center")
    return do_center(value, width)


def _indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if isinstance(width, int):
        _check_size(width * max(1, value.count("\n") + 1), "indent")
    return do_indent(value, width, first, blank)


class ContextHelpers:
    """Base of the objects whose bound methods the engine puts in contexts as functions (the
    history helpers `has_event`, `count_events`, `last_event`).

    A subclass promises that every public method is safe to call from a template, takes no
    Jinja context and changes nothing. The sandbox then calls them straight away: Jinja's own
    checks of a callable (`unsafe_callable`, `alters_data`, `__call__`, `jinja_pass_arg`) are
    four failed attribute reads on a bound method, more than a history query itself costs.
    """


class TidingsSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with mapping-first attribute access and size limits on allocating operations."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one flat dict: the environment's, then the template's own.

        Jinja's default is a ChainMap over both, which Jinja copies into a dict (and a set) at
        every render: a tenth of an email's rendering. The environment's globals are complete
        before any template is compiled (`make_environment`), so a snapshot reads the same.
        """
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`obj.name` on a mapping reads the key `name` first (data beats dict methods)."""
        # A plain dict (the context's own data) needs no Mapping ABC check, the costly part.
        if type(obj) is dict or isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        """Apply `*`, `**` or `%` after checking the size of what they would build."""
        if operator == "*":
            return _multiply(left, right)
        if operator == "**":
            return _power(left, right)
        if operator == "%":
            return _modulo(left, right)
        return super().call_binop(context, operator, left, right)

    def call(
        __self,  # noqa: N805 - Jinja's own signature, so `self` can be a keyword argument
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Call through the sandbox, refusing huge widths given to str padding methods."""
        if type(__obj) is MethodType and isinstance(__obj.__self__, ContextHelpers):
            # What Jinja's checks and `Context.call` come to for such a method.
            kwargs.pop("_block_vars", None)
            kwargs.pop("_loop_vars", None)
            try:
                return __obj(*args, **kwargs)
            except StopIteration:
                return __context.environment.undefined(
                    "value was undefined because a callable raised a StopIteration exception"
                )
        if isinstance(getattr(__obj, "__self__", None), str) and (
            getattr(__obj, "__name__", "") in _PADDING_METHODS
        ):
            for value in (*args, *kwargs.values()):
                if isinstance(value, int) and not isinstance(value, bool):
                    _check_size(value, f"str.{__obj.__name__}")
        return super().call(__context, __obj, *args, **kwargs)


def make_environment(
    loader: jinja2.BaseLoader | None = None,
    *,
    autoescape: bool | Callable[[str | None], bool] = False,
) -> ImmutableSandboxedEnvironment:
    """A sandboxed, strict environment with Tidings' filters and size limits installed."""
    env = TidingsSandbox(
        loader=loader,
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    env.filters["center"] = _center
    env.filters["indent"] = _indent
    env.globals["range"] = _safe_range
    del env.globals["lipsum"]  # filler text has no place in a sent message
    return env


CONTEXT_NAMES = ("contact", "event", "params", "run", "unsubscribe_url", "now")
"""Top-level names of the render context the engine builds; others are typos caught at load."""

_UNDEFINED_NAME = re.compile(r"^'(?P<name>[^']+)' is undefined$")
_MISSING_ATTRIBUTE = re.compile(r"has no (?:attribute|element) '?(?P<name>[^']+?)'?$")


def unknown_names(tree: nodes.Template | nodes.Node, known: Iterable[str]) -> list[tuple[str, int]]:
    """Variables a parsed template reads but neither defines nor gets from context or globals."""
    allowed = set(known) | {"self", "loop", "super", "caller", "varargs", "kwargs"}
    if isinstance(tree, nodes.Template):
        undeclared = meta.find_undeclared_variables(tree)
    else:
        undeclared = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    missing = []
    for name in sorted(undeclared - allowed):
        lines = [n.lineno for n in tree.find_all(nodes.Name) if n.name == name]
        missing.append((name, min(lines, default=0)))
    return sorted(missing, key=lambda item: (item[1], item[0]))


def undefined_variable(exc: jinja2.UndefinedError, source: str = "") -> str:
    """The variable an UndefinedError is about: `contact.FIRSTNAME` when `source` shows the path.

    Jinja only knows the last name (`'dict object' has no attribute 'FIRSTNAME'`); the template
    text it failed on (its line, or a whole condition) usually shows the dotted path to it.
    """
    message = str(exc.message or "")
    match = _UNDEFINED_NAME.match(message) or _MISSING_ATTRIBUTE.search(message)
    if match is None:
        return message
    name = match["name"]
    path = re.search(rf"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.{re.escape(name)}\b", source)
    return f"{path[1]}.{name}" if path else name


def describe(exc: BaseException, source: str = "") -> str:
    """A one-line reason for an exception raised while compiling or rendering `source`."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"no template named {exc.name!r}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable {undefined_variable(exc, source)!r}"
    if isinstance(exc, RecursionError):
        return "recursion too deep"
    return f"{type(exc).__name__}: {exc}"


def error_location(exc: Exception, fallback: str) -> tuple[str, int | None]:
    """File and line of the innermost template frame of `exc` (Jinja rewrites frames to these)."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.filename or fallback, exc.lineno
    found: tuple[str, int | None] = (fallback, None)
    tb = exc.__traceback__
    while tb is not None:
        frame_globals = tb.tb_frame.f_globals
        if "__jinja_exception__" in frame_globals or "__jinja_template__" in frame_globals:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found
