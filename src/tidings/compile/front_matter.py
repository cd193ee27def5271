"""The front matter atop an email's HTML file: `subject:` and `preheader:` lines between `---`.

Values are kept verbatim (they are Jinja templates, compiled by `tidings.compile.templates`),
with the line and column each starts at, so errors in them point into the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FrontMatter:
    """The `---` block atop an email: fields with their line, the blanked body, problems."""

    fields: dict[str, tuple[str, int]]
    body: str
    problems: list[tuple[int, str]]
    starts: dict[int, int] = field(default_factory=dict)  # line -> where its value starts

    def column(self, line: int, column: int) -> int:
        """The file's column for `column` of the value written on `line` (1 when unknown)."""
        return self.starts[line] + column if line in self.starts else 1


FRONT_MATTER_KEYS = ("subject", "preheader")
_FIELD = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\s*:\s?(?P<value>.*)$")


def parse_front_matter(source: str) -> FrontMatter:
    """Split `key: value` lines between leading `---` lines; values are kept verbatim (Jinja)."""
    lines = source.split("\n")
    if not lines or lines[0].strip() != "---":
        return FrontMatter({}, source, [(1, "expected front matter between '---' lines")])
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        return FrontMatter({}, source, [(1, "front matter opened with '---' is never closed")])
    fields: dict[str, tuple[str, int]] = {}
    problems: list[tuple[int, str]] = []
    starts: dict[int, int] = {}
    for index in range(1, end):
        text, line = lines[index].strip(), index + 1
        if not text or text.startswith("#"):
            continue
        match = _FIELD.match(text)
        if match is None:
            problems.append((line, f"expected 'key: value', found {text!r}"))
            continue
        key, value = match["key"], match["value"].strip()
        lead = len(lines[index]) - len(lines[index].lstrip())
        start = lead + match.start("value") + len(match["value"]) - len(match["value"].lstrip())
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]  # YAML-style quotes, without YAML (whose `{{` is a mapping)
            start += 1
        if key not in FRONT_MATTER_KEYS:
            problems.append((line, f"unknown key {key!r} (expected one of subject, preheader)"))
        elif key in fields:
            problems.append((line, f"{key!r} given twice (first on line {fields[key][1]})"))
        elif key == "subject" and not value:
            problems.append((line, "'subject' is empty"))
        else:
            fields[key] = (value, line)
            starts[line] = start
    if "subject" not in fields and not any("subject" in message for _, message in problems):
        problems.append((1, "front matter has no 'subject'"))
    body = "\n" * (end + 1) + "\n".join(lines[end + 1 :])
    return FrontMatter(fields, body, problems, starts)
