"""Columns for Jinja's problems, which Jinja reports by line only.

A syntax error's column is where the token the parser stopped at starts (the `}` of
`{{ name }`, the tag name of an unknown tag, the end of the text for an unclosed block); for an
error of the lexer itself (an unclosed string), where the text it could not read starts. The
source is lexed again with each token's offset kept: Jinja's tokens carry no position, so each
is found in the text after the one before it (whitespace stripped by `trim_blocks`/
`lstrip_blocks` or `-` only shortens the text a token carries, never reorders it).

Any problem whose column cannot be told this way (or whose token is not on the error's line)
gets column 1: editors' problem matchers want `line:col`, and the start of the line is honest.
A name (an unknown variable) is found as the first whole word of that name in its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import jinja2
from jinja2.lexer import Token, TokenStream
from jinja2.parser import Parser


def syntax_error_column(
    env: jinja2.Environment, source: str, exc: jinja2.TemplateSyntaxError
) -> int:
    """The 1-based column in line `exc.lineno` of `source` where a syntax error is."""
    text = source.replace("\r\n", "\n").replace("\r", "\n")  # as Jinja's lexer counts lines
    offsets: dict[int, tuple[Token, int]] = {}  # id(token) -> (the token, kept alive; offset)
    cursor = 0  # where the raw token being handed on starts, then where it ends
    lexer_failed = False

    def raw() -> Iterator[tuple[int, str, str]]:
        nonlocal cursor, lexer_failed
        tokens = env.lexer.tokeniter(text, None)
        while True:
            try:
                lineno, kind, value = next(tokens)
            except StopIteration:
                return
            except jinja2.TemplateSyntaxError:
                lexer_failed = True
                raise
            found = text.find(value, cursor) if value else cursor
            cursor = max(found, cursor)
            yield lineno, kind, value
            cursor += len(value)

    def tagged() -> Iterator[Token]:
        for token in env.lexer.wrap(raw()):
            offsets[id(token)] = (token, cursor)
            yield token

    parser = Parser(env, "")
    try:
        parser.stream = TokenStream(tagged(), None, None)
        parser.parse()
    except jinja2.TemplateSyntaxError as again:
        if again.message != exc.message or again.lineno != exc.lineno:
            return 1
        if lexer_failed:  # it stopped where the text it could not read starts
            rest = text[cursor:]
            return _column(text, cursor + len(rest) - len(rest.lstrip(" \t")), exc.lineno)
        current = parser.stream.current
        if current.type == "eof":  # nothing unexpected but the end: point past the line's text
            end = text.find("\n", _line_start(text, exc.lineno))
            return _column(text, len(text) if end < 0 else end, exc.lineno)
        return _column(text, offsets.get(id(current), (current, -1))[1], exc.lineno)
    return 1


def _line_start(text: str, lineno: int) -> int:
    at = 0
    for _ in range(lineno - 1):
        at = text.find("\n", at) + 1
        if at == 0:
            return len(text)
    return at


def _column(text: str, offset: int, lineno: int) -> int:
    if offset < 0 or text.count("\n", 0, offset) + 1 != lineno:
        return 1  # not on the error's line: no column rather than a wrong one
    return offset - text.rfind("\n", 0, offset)


def name_column(line: str, name: str) -> int:
    """The 1-based column of the first whole-word `name` (its first part) in `line`, else 1."""
    first = name.split(".", 1)[0]
    found = re.search(rf"(?<![\w.]){re.escape(first)}\b", line)
    return found.start() + 1 if found else 1
