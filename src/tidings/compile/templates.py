"""Message templates: found and compiled once at load, rendered per message in the sandbox.

Files under the templates directory (`templates/`):
- `NAME.email.html` — an email's HTML part, autoescaped, starting with a front matter block
  between `---` lines holding `subject:` (required) and `preheader:` (optional), each a Jinja
  template rendered without escaping. The body is compiled with the front matter lines blanked so
  error line numbers are file line numbers. The body also sees `subject` and `preheader`.
- `NAME.email.txt` — optional plain-text part; when absent the text is derived from the HTML.
- `NAME.sms.txt` — an SMS, plain text.
- any other `.html`/`.txt`/`.jinja`/`.j2` file is a layout or partial for `{% extends %}` /
  `{% include %}`; it is syntax-checked at load but is not a message. NAME may contain `/`.

Limits (characters, i.e. code points, of rendered output): `MAX_EMAIL_PART_CHARS` (512 Ki) per
HTML or text part, `MAX_HEADER_CHARS` (2 Ki) for the subject and preheader, `MAX_SMS_CHARS`
(4 Ki) for an SMS and for inline templates. Exceeding one is a TemplateError.

Every failure — syntax, undefined variable, sandbox refusal, any exception raised while
rendering — leaves as TemplateError / UndefinedVariableError naming the template file and line
(the innermost template frame, so an error in a layout names the layout). Rendered values bound
for headers (subject, preheader) have control characters and line breaks collapsed to a space.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes

from tidings.compile.front_matter import FrontMatter, parse_front_matter
from tidings.compile.html_text import html_to_text
from tidings.compile.jinja_columns import name_column, syntax_error_column
from tidings.compile.sandbox import (
    CONTEXT_NAMES,
    describe,
    error_location,
    make_environment,
    undefined_variable,
    unknown_names,
)
from tidings.errors import (
    Location,
    Problem,
    TemplateError,
    TidingsError,
    UndefinedVariableError,
)

EMAIL_HTML = ".email.html"
EMAIL_TEXT = ".email.txt"
SMS_TEXT = ".sms.txt"
TEMPLATE_SUFFIXES = (".html", ".htm", ".txt", ".jinja", ".j2")

MAX_EMAIL_PART_CHARS = 512 * 1024
MAX_HEADER_CHARS = 2 * 1024
MAX_SMS_CHARS = 4 * 1024
MAX_INLINE_CACHE = 4096

BODY_NAMES = (*CONTEXT_NAMES, "subject", "preheader")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class RenderedEmail:
    """One rendered email: header-safe subject and preheader, HTML and text parts."""

    subject: str
    html: str
    text: str
    preheader: str | None


def header_safe(value: str) -> str:
    """Collapse control characters and line breaks to single spaces, so data cannot add headers."""
    if value.isprintable():  # no character `_CONTROL` matches (all are unprintable): most values
        return value.strip()
    return _CONTROL.sub(" ", value).strip()


def _is_html(name: str | None) -> bool:
    return name is not None and name.endswith((".html", ".htm"))


class _Loader(jinja2.FileSystemLoader):
    """Loads from the templates directory, blanking the front matter of email HTML files."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(EMAIL_HTML):
            source = parse_front_matter(source).body
        return source, filename, uptodate


@dataclass
class _Email:
    html: jinja2.Template | None = None
    text: jinja2.Template | None = None
    subject: jinja2.Template | None = None
    preheader: jinja2.Template | None = None
    error: TemplateError | None = None


def _from_source(env: jinja2.Environment, source: str, filename: str) -> jinja2.Template:
    """Compile a string as an unescaped template whose errors point at `filename`."""
    code = env.compile(source, name=None, filename=filename)
    return env.template_class.from_code(env, code, env.make_globals(None))


class TemplateCatalog:
    """Every message template of a directory, compiled; renders emails, SMS and inline templates."""

    def __init__(self, directory: Path | None, env: jinja2.Environment) -> None:
        self._directory = directory
        self._env = env
        self._emails: dict[str, _Email] = {}
        self._sms: dict[str, jinja2.Template | TemplateError] = {}
        self._inline: dict[tuple[str, str], jinja2.Template] = {}
        self._sources: dict[str, str] = {}  # filename -> original text, to name variables
        self.problems: list[Problem] = []
        self.files = 0  # template files checked

    # ------------------------------------------------------------------ loading

    @classmethod
    def empty(cls) -> TemplateCatalog:
        """A catalog with no files, still able to render inline templates."""
        return cls(None, make_environment(autoescape=_is_html))

    @classmethod
    def load(cls, directory: Path) -> TemplateCatalog:
        """Find and compile every template under `directory`; problems are collected, not raised."""
        if not directory.exists():
            return cls.empty()
        env = make_environment(_Loader(str(directory)), autoescape=_is_html)
        catalog = cls(directory, env)
        if not directory.is_dir():
            catalog._problem(str(directory), 0, "expected a directory of templates")
            return catalog
        files = sorted(
            p.relative_to(directory).as_posix()
            for p in directory.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        )
        for rel in files:
            catalog._load_file(rel, set(files))
        return catalog

    def _display(self, filename: str) -> str:
        """`templates/cart.email.html` for a file of the directory; other names unchanged.

        The name errors raised while rendering carry: the same wherever the daemon or preview
        runs from (traces are stored; preview's JSON is compared with golden files).
        """
        if self._directory is None:
            return filename
        try:
            rel = Path(filename).resolve().relative_to(self._directory.resolve())
        except ValueError:
            return filename
        return f"{self._directory.name}/{rel.as_posix()}"

    def _file(self, rel: str) -> str:
        """How a file of the directory is named in messages, existing or not."""
        return f"{self._directory.name}/{rel}" if self._directory is not None else rel

    def _problem(self, filename: str, line: int, message: str, column: int = 1) -> None:
        """A load problem, named by a path one can open; `column` 1 when Jinja tells no more."""
        where = Location(openable(filename), line, column if line > 0 else 0)
        self.problems.append(Problem(where, "", message))

    def _load_file(self, rel: str, files: set[str]) -> None:
        if rel.endswith(TEMPLATE_SUFFIXES):
            self.files += 1
        if rel.endswith(EMAIL_HTML):
            self._load_email(rel[: -len(EMAIL_HTML)])
        elif rel.endswith(EMAIL_TEXT):
            name = rel[: -len(EMAIL_TEXT)]
            if name + EMAIL_HTML not in files:
                assert self._directory is not None
                self._problem(
                    str(self._directory / rel),
                    0,
                    f"text part without an HTML part {name + EMAIL_HTML!r}",
                )
        elif rel.endswith(SMS_TEXT):
            name = rel[: -len(SMS_TEXT)]
            template = self._compile_file(rel, CONTEXT_NAMES)
            self._sms[name] = template if template is not None else self._broken(rel)
        elif rel.endswith(TEMPLATE_SUFFIXES):
            self._compile_file(rel, None)

    def _broken(self, rel: str) -> TemplateError:
        return TemplateError("template has errors (see validate)", template=self._file(rel))

    def _compile_file(self, rel: str, known: Iterable[str] | None) -> jinja2.Template | None:
        """Compile one file and check it statically; None (and a Problem) when it is broken."""
        assert self._directory is not None
        path = str(self._directory / rel)
        problems_before = len(self.problems)
        try:
            source = (self._directory / rel).read_text(encoding="utf-8")
            self._sources[os.path.normpath(path)] = source
            template = self._env.get_template(rel)
            assert self._env.loader is not None
            body, _, _ = self._env.loader.get_source(self._env, rel)
            tree = self._env.parse(body)
        except UnicodeDecodeError:
            self._problem(path, 0, "expected UTF-8 text")
            return None
        except jinja2.TemplateSyntaxError as exc:
            self._problem(path, exc.lineno, describe(exc), self._syntax_column(rel, exc))
            return None
        except OSError as exc:
            self._problem(path, 0, f"cannot read: {exc.strerror}")
            return None
        self._check_references(path, tree, body)
        if known is not None:
            for name, line in unknown_names(tree, [*known, *self._env.globals]):
                column = name_column(_line_of(body, line), name)
                message = f"unknown variable {name!r} (known: {', '.join(known)})"
                self._problem(path, line, message, column)
        return template if len(self.problems) == problems_before else None

    def _syntax_column(self, rel: str, exc: jinja2.TemplateSyntaxError) -> int:
        assert self._env.loader is not None
        body, _, _ = self._env.loader.get_source(self._env, rel)  # as compiled: front matter blank
        return syntax_error_column(self._env, body, exc)

    def _check_references(self, path: str, tree: nodes.Template, body: str) -> None:
        """Literal `extends`/`include`/`import` targets must exist and compile."""
        kinds = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
        for node in tree.find_all(kinds):
            target = getattr(node, "template", None)
            if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
                continue  # a computed name can only be checked when rendering
            try:
                self._env.get_template(target.value)
            except jinja2.TemplateNotFound:
                column = _line_of(body, node.lineno).find(target.value) + 1  # 0 if not found
                message = f"no template named {target.value!r}"
                self._problem(path, node.lineno, message, column or 1)
            except jinja2.TemplateSyntaxError:
                pass  # reported against the target file itself

    def _load_email(self, name: str) -> None:
        assert self._directory is not None
        html_rel, text_rel = name + EMAIL_HTML, name + EMAIL_TEXT
        path = str(self._directory / html_rel)
        email = _Email()
        self._emails[name] = email
        problems_before = len(self.problems)
        email.html = self._compile_file(html_rel, BODY_NAMES)
        if (self._directory / text_rel).is_file():
            email.text = self._compile_file(text_rel, BODY_NAMES)
        source = self._sources.get(os.path.normpath(path))
        if source is not None:
            front = parse_front_matter(source)
            for line, message in front.problems:
                self._problem(path, line, message)
            email.subject = self._compile_header(path, front, "subject")
            email.preheader = self._compile_header(path, front, "preheader")
        if len(self.problems) != problems_before:
            email.error = self._broken(html_rel)

    def _compile_header(self, path: str, front: FrontMatter, key: str) -> jinja2.Template | None:
        if key not in front.fields:
            return None
        value, line = front.fields[key]
        source = "\n" * (line - 1) + value  # so Jinja's line numbers are the file's
        try:
            template = _from_source(self._env, source, path)
            tree = self._env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            column = syntax_error_column(self._env, source, exc)
            self._problem(path, exc.lineno, f"{key}: {describe(exc)}", front.column(line, column))
            return None
        for name, name_line in unknown_names(tree, [*CONTEXT_NAMES, *self._env.globals]):
            known = ", ".join(CONTEXT_NAMES)
            column = front.column(line, name_column(value, name))
            message = f"{key}: unknown variable {name!r} (known: {known})"
            self._problem(path, name_line, message, column)
        return template

    # ------------------------------------------------------------------ queries

    def has_email(self, name: str) -> bool:
        """Whether `templates/NAME.email.html` exists (it may still have problems)."""
        return name in self._emails

    def has_sms(self, name: str) -> bool:
        """Whether `templates/NAME.sms.txt` exists (it may still have problems)."""
        return name in self._sms

    def email_names(self) -> list[str]:
        """Names of the email templates, sorted."""
        return sorted(self._emails)

    def sms_names(self) -> list[str]:
        """Names of the SMS templates, sorted."""
        return sorted(self._sms)

    # ------------------------------------------------------------------ rendering

    def render_email(
        self, name: str, context: Mapping[str, Any], *, subject: str | None = None
    ) -> RenderedEmail:
        """Render email `name`; `subject` is an inline template overriding the file's subject."""
        email = self._emails.get(name)
        if email is None:
            raise TemplateError(
                f"no email template named {name!r}", template=self._file(name + EMAIL_HTML)
            )
        if email.error is not None or email.html is None or email.subject is None:
            raise email.error or self._broken(name + EMAIL_HTML)
        if subject is not None:
            rendered_subject = self.render_inline(subject, context, name=f"{name} subject")
        else:
            rendered_subject = self._render(email.subject, context, MAX_HEADER_CHARS)
        subject_line = header_safe(rendered_subject)
        preheader = None
        if email.preheader is not None:
            rendered = self._render(email.preheader, context, MAX_HEADER_CHARS)
            preheader = header_safe(rendered) or None  # an empty preheader is no preheader
        body_context = {**context, "subject": subject_line, "preheader": preheader}
        html = self._render(email.html, body_context, MAX_EMAIL_PART_CHARS).lstrip()
        if email.text is not None:
            text = self._render(email.text, body_context, MAX_EMAIL_PART_CHARS).strip("\n").rstrip()
        else:
            text = html_to_text(html)
        return RenderedEmail(subject=subject_line, html=html, text=text, preheader=preheader)

    def render_sms(self, name: str, context: Mapping[str, Any]) -> str:
        """Render SMS `name` as plain text."""
        template = self._sms.get(name)
        if template is None:
            raise TemplateError(
                f"no SMS template named {name!r}", template=self._file(name + SMS_TEXT)
            )
        if isinstance(template, TemplateError):
            raise template
        return self._render(template, context, MAX_SMS_CHARS).strip()

    def render_inline(
        self, source: str, context: Mapping[str, Any], *, name: str = "<inline>"
    ) -> str:
        """Render a small inline template (not escaped), compiled once per source."""
        key = (source, name)
        template = self._inline.get(key)
        if template is None:
            template = _compile_inline(self._env, source, name)
            if len(self._inline) >= MAX_INLINE_CACHE:
                self._inline.clear()  # sources come from workflow files: never in practice
            self._inline[key] = template
        return self._render(template, context, MAX_SMS_CHARS, source=source)

    def _render(
        self,
        template: jinja2.Template,
        context: Mapping[str, Any],
        limit: int,
        *,
        source: str | None = None,
    ) -> str:
        """Render within `limit` characters; `source` is given for templates not read from files."""
        chunks: list[str] = []
        size = 0
        # What Jinja's `generate` does, without its copy of the context (the template's context
        # is a copy already, with the globals) and its generator around the template's own.
        names = context if isinstance(context, dict) else dict(context)
        try:
            for chunk in template.root_render_func(template.new_context(names)):
                size += len(chunk)
                if size > limit:
                    where = self._display(template.filename or "<template>")
                    raise TemplateError(f"output exceeds {limit:,} characters", template=where)
                chunks.append(chunk)
        except TidingsError:
            raise  # our own errors (the size cap, a store error from a callable) pass as they are
        except Exception:
            try:  # Jinja's frames at the template's lines, as `generate` would raise them
                template.environment.handle_exception()
            except Exception as exc:  # every Jinja or data failure becomes ours, located
                raise self._wrap(exc, template.filename or "<template>", source) from exc
        return "".join(chunks)

    def _wrap(self, exc: Exception, fallback: str, source: str | None) -> TemplateError:
        filename, line = error_location(exc, fallback)
        where = self._display(filename)
        if isinstance(exc, jinja2.UndefinedError):
            text = source if filename == fallback and source is not None else None
            text = text if text is not None else self._sources.get(filename)
            variable = undefined_variable(exc, _line_of(text, line))
            return UndefinedVariableError(variable, template=where, line=line)
        return TemplateError(describe(exc), template=where, line=line)


def openable(filename: str) -> str:
    """A path that opens from here: relative to the working folder when under it, else absolute."""
    path = Path(os.path.abspath(filename))
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def _line_of(source: str | None, line: int | None) -> str:
    lines = (source or "").splitlines()
    return lines[line - 1] if line is not None and 0 < line <= len(lines) else ""


def _compile_inline(env: jinja2.Environment, source: str, name: str) -> jinja2.Template:
    try:
        template = _from_source(env, source, name)
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(describe(exc), template=name, line=exc.lineno) from None
    for variable, line in unknown_names(tree, [*CONTEXT_NAMES, *env.globals]):
        known = ", ".join(CONTEXT_NAMES)
        raise TemplateError(
            f"unknown variable {variable!r} (known: {known})", template=name, line=line
        )
    return template


@cache
def _plain_environment() -> jinja2.Environment:
    return make_environment()


def compile_inline(source: str, *, name: str = "<inline>") -> None:
    """Check an inline template at load time; raises TemplateError (with line) when it is broken."""
    _compile_inline(_plain_environment(), source, name)
