"""Plain text from rendered email HTML, for emails without a `.email.txt` part.

The aim is what a reader of the text part expects, not a faithful layout: block elements become
paragraphs separated by one blank line, `<br>` a line break, list items `- item` (`1. item` in
ordered lists, indented when nested), links `text (url)` (just the text when it already is the
URL; fragment and `javascript:` links keep only their text), images `[alt]`, table rows one line
each with cells separated by spaces. `<head>`, `<style>`, `<script>`, `<title>` and elements
hidden with `display:none` (the preheader) are dropped. Whitespace is collapsed outside `<pre>`
and entities are unescaped.

The markup is read by a small tokenizer of our own (tags, comments, declarations, text) rather
than `html.parser`, which costs several times as much per message and was most of the time of
rendering an email without a text part. Rendered email HTML is our own templates' output, so
the tokenizer needs only HTML's ordinary syntax; anything it does not recognise is text.
"""

from __future__ import annotations

import re
from html import unescape

BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "main", "nav", "p", "section", "table",
    }
)  # fmt: skip
DROPPED = frozenset({"head", "style", "script", "title", "template", "noscript"})
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_HIDDEN = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_WHITESPACE = " \t\r\n\f\v"  # what HTML text collapses (other spaces, e.g. no-break, stay)
_SPACES = re.compile(f"[{_WHITESPACE}]+")
# The runs of whitespace that collapsing changes: all but a lone space, which it would replace
# by itself (a match, a new string, per word of text: most of the cost of a paragraph).
_COLLAPSIBLE = re.compile(r" [ \t\r\n\f\v]+|[\t\r\n\f\v][ \t\r\n\f\v]*")

# Markers kept in the stream until the end, where they become newlines.
_LINE = "\x00L"
_PARAGRAPH = "\x00P"
_ITEM = "\x00I"  # prefix of a list item's indent and marker
_RAW = "\x00R"  # prefix of <pre> text, whose spaces and newlines are kept
_MARKER = re.compile(r"^( *(?:- |\d+\. ))")

# One token at a time: a comment, a declaration or processing instruction, an end tag (name in
# group 1), a start tag (name, attributes, "/" of a self-closing tag in groups 2-4), a raw-text
# element whole (name, attributes, content in groups 5-7), or text up to the next "<".
# A start tag's attributes run to the first ">" or "/>" outside quotes. They are read in runs
# of plain characters, possessively (Python 3.11): the same tokens as a lazy match one
# character at a time, a third cheaper on the long `style` attributes of email HTML.
# Only the raw-text element names ignore case, in `(?i:...)` groups: the whole pattern ignoring
# case folded every character it read, text and attributes too (twice the cost of a match).
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<[!?][^>]*>?"
    r"|</([a-zA-Z][^\s/>]*)[^>]*>?"
    r"|<(?!(?i:script|style|title|textarea)\b)([a-zA-Z][^\s/>]*)"
    r"((?:[^>\"'/]++|/(?!>)|\"[^\"]*\"|'[^']*')*+)(/?)>"
    # Elements whose content is not markup: only their own end tag ends them.
    r"|<((?i:script|style|title|textarea))\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>(.*?)"
    r"(?:</(?i:\5)\b[^>]*>?|\Z)"
    r"|<|[^<]+",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(r"([^\s/>\"'=]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+)))?")
# The start tags whose attributes the text shows: an image's alt, a link's href.
_SHOWN_ATTRIBUTES = frozenset({"img", "a"})
_NO_ATTRIBUTES: dict[str, str | None] = {}  # a tag without attributes (only read)


def _attributes_matter(tag: str, text: str) -> bool:
    """Whether a start tag's attributes can change the text: an image's alt, a link's href, or
    a style that hides the element. Most tags of email HTML are neither, and reading their
    attributes (`style`, `width`, `cellpadding`...) was most of the cost of a text part. A
    style's value is a piece of the tag's text unless an entity spells it: with no `&` in the
    text, a hiding style is there only if the text matches `_HIDDEN` somewhere."""
    if not text:
        return False
    return tag in _SHOWN_ATTRIBUTES or "&" in text or _may_hide(text)


def _may_hide(text: str) -> bool:
    """Whether `_HIDDEN` matches in `text`. It ignores case, yet the letters of "none" match
    only themselves and their ASCII capitals: text without "none" once lowered (a quicker scan
    than the pattern's, which folds the case of every character) cannot match."""
    return "none" in text.lower() and _HIDDEN.search(text) is not None


def _attributes(text: str) -> list[tuple[str, str | None]]:
    if not text:  # most tags of a text part (p, br, li, td): no scan to set up
        return []
    attrs: list[tuple[str, str | None]] = []
    for match in _ATTRIBUTE.finditer(text):
        name, double, single, bare = match.groups()
        value = double if double is not None else single if single is not None else bare
        attrs.append((name.lower(), None if value is None else unescape(value)))
    return attrs


class _TextBuilder:
    def __init__(self) -> None:
        self.out: list[str] = []
        self._skip_tag: str | None = None
        self._skip_depth = 0
        self._pre = 0
        self._lists: list[list[int]] = []  # per open list: [is_ordered, next number]
        self._links: list[tuple[str | None, int]] = []

    def feed(self, html: str) -> None:
        """Read a whole document, calling the handlers below in order."""
        text: list[str] = []  # consecutive text tokens, handed over as one
        for match in _TOKEN.finditer(html):
            piece = match[0]
            if piece[0] != "<" or piece == "<":
                text.append(piece)
                continue
            end_tag, tag, attrs, closed, raw_tag, raw_attrs, raw_text = match.groups()
            if text:  # markup, even a comment, ends a run of text (as for html.parser)
                self.handle_data(unescape("".join(text)))
                text = []
            if end_tag is not None:
                self.handle_endtag(end_tag.lower())
            elif tag is not None:
                name = tag.lower()
                # Attributes that cannot change the text are not read (`_attributes_matter`).
                read = _attributes(attrs) if _attributes_matter(name, attrs) else []
                if closed:
                    self.handle_startendtag(name, read)
                else:
                    self.handle_starttag(name, read)
            elif raw_tag is not None:  # script, style, title, textarea: content is not markup
                name = raw_tag.lower()
                matter = _attributes_matter(name, raw_attrs)
                self.handle_starttag(name, _attributes(raw_attrs) if matter else [])
                if raw_text:
                    self.handle_data(raw_text)
                self.handle_endtag(name)
        if text:
            self.handle_data(unescape("".join(text)))

    # ---------------------------------------------------------------- skipping

    def _skipping(self, tag: str, starting: bool) -> bool:
        if self._skip_tag is None:
            return False
        if tag == self._skip_tag and tag not in VOID:
            self._skip_depth += 1 if starting else -1
            if self._skip_depth == 0:
                self._skip_tag = None
        return True

    # ---------------------------------------------------------------- events

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # Called for every tag: `_skipping` only while an element is skipped.
        if self._skip_tag is not None and self._skipping(tag, starting=True):
            return
        attributes = dict(attrs) if attrs else _NO_ATTRIBUTES
        style = attributes.get("style")
        if tag in DROPPED or (style and _HIDDEN.search(style)):
            if tag not in VOID:
                self._skip_tag, self._skip_depth = tag, 1
            return
        # The tests name disjoint tags: the commonest of email HTML (tables, blocks) first.
        if tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "tr":
            self.out.append(_LINE)
        elif tag in BLOCKS:
            self.out.append(_PARAGRAPH)
        elif tag == "a":
            self._links.append((attributes.get("href"), len(self.out)))
        elif tag == "img":
            alt = (attributes.get("alt") or "").strip()
            if alt:
                self.out.append(f"[{alt}]")
        elif tag == "br":
            self.out.append(_LINE)
        elif tag == "hr":
            self.out += [_PARAGRAPH, "---", _PARAGRAPH]
        elif tag in ("ul", "ol"):
            self.out.append(_LINE if self._lists else _PARAGRAPH)
            self._lists.append([tag == "ol", 1])
        elif tag == "li":
            self._list_item()
        elif tag == "pre":
            self._pre += 1
            self.out.append(_PARAGRAPH)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None and self._skipping(tag, starting=False):
            return
        if tag == "tr":  # disjoint tags again, the commonest first
            self.out.append(_LINE)
        elif tag in BLOCKS:
            self.out.append(_PARAGRAPH)
        elif tag == "a" and self._links:
            self._end_link()
        elif tag in ("ul", "ol") and self._lists:
            self._lists.pop()
            self.out.append(_LINE if self._lists else _PARAGRAPH)
        elif tag == "pre" and self._pre:
            self._pre -= 1
            self.out.append(_PARAGRAPH)

    def handle_data(self, data: str) -> None:
        if self._skip_tag is not None:
            return
        data = data.replace("\x00", "")  # NUL starts our markers; it has no place in text
        self.out.append(_RAW + data if self._pre else _collapsed(data))

    # ---------------------------------------------------------------- helpers

    def _list_item(self) -> None:
        indent = "  " * max(0, len(self._lists) - 1)
        if self._lists and self._lists[-1][0]:
            marker = f"{self._lists[-1][1]}. "
            self._lists[-1][1] += 1
        else:
            marker = "- "
        self.out += [_LINE, _ITEM + indent + marker]

    def _end_link(self) -> None:
        href, start = self._links.pop()
        if not href:
            return
        href = href.strip()
        if href.startswith(("#", "javascript:")):
            return
        text = _SPACES.sub(" ", "".join(p for p in self.out[start:] if not p.startswith("\x00")))
        shown = href.removeprefix("mailto:").removeprefix("tel:")
        if text.strip() in (href, shown):
            return
        self.out.append(f" ({shown})" if text.strip() else shown)


def _collapsed(data: str) -> str:
    """Text with its whitespace collapsed (`_COLLAPSIBLE`), sparing the pattern the two usual
    cases: a template's indentation between tags (whitespace only: one space) and text whose
    spaces are all lone ones (no tab or line break either: those are unprintable)."""
    if not data.strip(_WHITESPACE):
        return " " if data else data
    if "  " not in data and data.isprintable():
        return data
    return _COLLAPSIBLE.sub(" ", data)


def _lines(chunks: list[str]) -> tuple[list[str], set[int]]:
    """Turn the marked stream into lines and the indexes of the preformatted ones; paragraphs
    leave a blank line."""
    lines: list[str] = [""]
    raw: set[int] = set()
    for chunk in chunks:
        if chunk[:1] != "\x00":  # text, most chunks: every marker starts with NUL
            lines[-1] += chunk
        elif chunk in (_LINE, _PARAGRAPH):
            if chunk == _PARAGRAPH and lines[-1].strip():
                lines += ["", ""]
            elif lines[-1].strip():
                lines.append("")
        elif chunk.startswith(_ITEM):  # always right after a _LINE: the line is empty
            lines[-1] = chunk[len(_ITEM) :]
        elif chunk.startswith(_RAW):
            first, *rest = chunk[len(_RAW) :].split("\n")
            lines[-1] += first
            raw.add(len(lines) - 1)
            for part in rest:
                lines.append(part)
                raw.add(len(lines) - 1)
        else:
            lines[-1] += chunk
    return lines, raw


def html_to_text(html: str) -> str:
    """A readable plain-text version of an email's HTML."""
    builder = _TextBuilder()
    builder.feed(html)
    return text_of(builder.out)


def text_of(chunks: list[str]) -> str:
    """The text of a builder's marked stream: lines trimmed, at most one blank line between."""
    result: list[str] = []
    lines, raw = _lines(chunks)
    for index, line in enumerate(lines):
        # A list item's marker starts with a space, "-" or a digit (`\d`: any decimal digit);
        # other lines (most, and the blank ones between paragraphs) need no match.
        first = line[:1]
        marker = _MARKER.match(line) if first and (first in " -" or first.isdecimal()) else None
        if index in raw:
            text = line.rstrip()
        elif marker:  # keep a list item's indent, collapse the rest
            text = marker[1] + line[len(marker[1]) :].strip()
        else:
            text = line.strip()
        if not text and (not result or not result[-1]):
            continue  # never two blank lines in a row, none at the start
        result.append(text)
    while result and not result[-1]:
        result.pop()
    return "\n".join(result)
