"""Plain text derived from email HTML, as a reader of the text part sees it."""

from __future__ import annotations

import itertools
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.compile.html_text import (
    _COLLAPSIBLE,
    _collapsed,
    _TextBuilder,
    html_to_text,
    text_of,
)


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One\n\nTwo"),
        ("<p>Line one<br>line two<br/>line three</p>", "Line one\nline two\nline three"),
        ("<p>  lots   of\n\n   space </p>", "lots of space"),
        ("<h1>Title</h1><div>Body</div>", "Title\n\nBody"),
        ("<ul><li>Shoe</li><li>Sock</li></ul>", "- Shoe\n- Sock"),
        ("<ol><li>First</li><li>Second</li></ol>", "1. First\n2. Second"),
        ("<ul><li>A<ul><li>A1</li><li>A2</li></ul></li><li>B</li></ul>", "- A\n  - A1\n  - A2\n- B"),
        ("<p>Intro</p><ul><li>x</li></ul><p>Outro</p>", "Intro\n\n- x\n\nOutro"),
        ('<a href="https://shop.example/cart">your cart</a>', "your cart (https://shop.example/cart)"),
        ('<a href="https://shop.example">https://shop.example</a>', "https://shop.example"),
        ('<a href="mailto:help@shop.example">help@shop.example</a>', "help@shop.example"),
        ('<a href="mailto:help@shop.example">Write to us</a>', "Write to us (help@shop.example)"),
        ('<a href="#top">Top</a>', "Top"),
        ('<a href="javascript:void(0)">Click</a>', "Click"),
        ('<a href="https://x.example"><img src="logo.png"></a>', "https://x.example"),
        ('<a href="https://x.example"><img src="l.png" alt="Logo"></a>', "[Logo] (https://x.example)"),
        ('<img src="shoe.png" alt="A red shoe"> Only €10', "[A red shoe] Only €10"),
        ('<img src="spacer.gif" alt="">Text', "Text"),
        ("<p>Fish &amp; chips &lt;3 &eacute;t&eacute; &#8364;5 &nbsp;x</p>", "Fish & chips <3 été €5 \xa0x"),
        ("<html><head><title>T</title><style>p{color:red}</style></head><body><p>Hi</p></body></html>", "Hi"),
        ("<p>Hi</p><script>alert(1)</script><p>Bye</p>", "Hi\n\nBye"),
        ('<div style="display:none; max-height:0">preheader</div><p>Body</p>', "Body"),
        ('<div style="DISPLAY: NONE"><div>hidden</div> still hidden</div><p>Shown</p>', "Shown"),
        ("<table><tr><td>Shoe</td><td>€10</td></tr><tr><td>Sock</td><td>€2</td></tr></table>", "Shoe €10\nSock €2"),
        ("<pre>  keep\n    this</pre><p>after</p>", "  keep\n    this\n\nafter"),
        ("<p>a</p><hr><p>b</p>", "a\n\n---\n\nb"),
        ("Just text", "Just text"),
        ("", ""),
        ("<p></p><p>  </p><p>x</p>", "x"),
        ("<p>unclosed<p>paragraphs", "unclosed\n\nparagraphs"),
        ("<a name='x'>anchor</a> text", "anchor text"),
        ("one<div/>two", "one\n\ntwo"),
        ('<p>a<img src="x.png" style="display:none" alt="hidden">b</p>', "ab"),
    ],
)  # fmt: skip
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_an_email_layout_reads_as_text() -> None:
    html = """<!doctype html>
<html><head><meta charset="utf-8"><title>Your cart</title>
<style>.btn { color: white }</style></head>
<body>
<div style="display:none">You left 2 items</div>
<table role="presentation"><tr><td>
  <h1>Hello Ann,</h1>
  <p>You left these in your cart:</p>
  <ul>
    <li>Red shoe — €12.50</li>
    <li>Blue sock — €2.00</li>
  </ul>
  <p><a class="btn" href="https://shop.example/cart/42">Back to your cart</a></p>
</td></tr></table>
<p class="footer">Shop Ltd, 1 Main St<br>
<a href="https://t.example/u/abc">Unsubscribe</a></p>
</body></html>"""
    assert html_to_text(html) == (
        "Hello Ann,\n\n"
        "You left these in your cart:\n\n"
        "- Red shoe — €12.50\n"
        "- Blue sock — €2.00\n\n"
        "Back to your cart (https://shop.example/cart/42)\n\n"
        "Shop Ltd, 1 Main St\n"
        "Unsubscribe (https://t.example/u/abc)"
    )


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ('<p>a<img alt="a/b" />b</p>', "a[a/b]b"),  # "/" inside quotes does not close the tag
        ('<p>a<img alt="1 > 0"/>b</p>', "a[1 > 0]b"),  # nor does ">"
        ("<p>x<br/ >y<br//>z</p>", "x\ny\nz"),
        ("<a href=/cart/>cart</a>", "/cartcart"),  # "/>" ends the tag after an unquoted value
        ("<p title='x/>'>quoted</p><p>next</p>", "quoted\n\nnext"),
        # a quote never closed: no tag, the markup is text
        (
            '<p>a <a href="https://x.example/unclosed>never closed</p>',
            'a <a href="https://x.example/unclosed>never closed',
        ),
        ("<p>a <img alt='it''s' src=x>b</p>", "a [it]b"),
    ],
)
def test_start_tags_end_at_the_first_unquoted_close(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_nul_characters_in_data_cannot_fake_line_breaks() -> None:
    assert html_to_text("<p>a\x00Lb\x00Pc</p>") == "aLbPc"


class _ParserDriven(HTMLParser):
    """The standard library's parser driving our text builder: the reference reading."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = _TextBuilder()
        self.handle_starttag = self.builder.handle_starttag  # type: ignore[method-assign]
        self.handle_startendtag = self.builder.handle_startendtag  # type: ignore[method-assign]
        self.handle_endtag = self.builder.handle_endtag  # type: ignore[method-assign]
        self.handle_data = self.builder.handle_data  # type: ignore[method-assign]


PIECES = [
    "<p>", "</p>", "<br>", "<br/>", "<a href='https://x.example/?a=1&amp;b=2'>", "</a>",
    '<A HREF="mailto:a@b.example">', "</A>", "<ul>", "<ol>", "<li>", "</ul>", "</ol>",
    "&amp;", "&lt;", "&nbsp;", "&#39;", "&eacute;", " ", "\n", "\t", "word", "Zoë 🛒",
    "<!-- a comment -->", '<img src="x.png" alt="a &amp; b">', "<img alt=x>",
    "<div style='display:none'>", '<span style="color: red">', "</span>", "</div>",
    "<pre>", "</pre>", "<script>if (a < b) { x('<p>') }</script>", "<style>p { a: b }</style>",
    "<table><tr><td>a</td><td>b</td></tr></table>", "<th>", "<tr>", "<", ">", "=",
    "<!DOCTYPE html>", "<b>", "</b>", "<h1>", "</h1>", "<hr>", "<head><title>T</title></head>",
    "<td class=\"x\" data-y='1'>", "<input disabled>", "<p\nclass='wrapped'>",
    # Raw-text elements in any case (only their names ignore case in the tokenizer).
    "<SCRIPT>x('<p>')</Script>", "<Style>p { a: b }</STYLE>", "<TITLE>T</title>",
    # Attributes that may hide an element or not, spelt with entities, in other attributes.
    '<div style="disp&#108;ay:none">', '<div title="display:none">', "<SPAN STYLE='DISPLAY : NONE'>",
    '<td style="color: red" data-x="&amp;">', '<p style="display:block" title="display: none">',
    '<img style="display:none" alt="hidden">', '<a style="x" href="#top">', "<textarea rows=2>t</textarea>",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_the_markup_is_read_as_the_standard_library_parser_reads_it(pieces) -> None:
    html = "".join(pieces)
    reference = _ParserDriven()
    reference.feed(html)
    reference.close()

    assert html_to_text(html) == text_of(reference.builder.out)


def test_a_line_starting_like_a_list_item_is_collapsed_like_one() -> None:
    # Text chunks are collapsed one by one, so a line can hold two spaces; a line that starts
    # with a list marker, of any decimal digit, keeps one after it. Lines that cannot
    # start a marker skip the match.
    assert html_to_text("<p>1. <b> one</b></p>") == "1. one"
    assert html_to_text("<p>\u0663. <b> three</b></p>") == "\u0663. three"
    assert html_to_text("<p>a. <b> a</b></p>") == "a.  a"


def test_text_collapses_as_the_pattern_collapses_it() -> None:
    """`_collapsed` spares the pattern whitespace-only and lone-space text: every string of up
    to four of these characters (collapsed ones, a no-break space, line separators, letters)
    collapses as `_COLLAPSIBLE` collapses it."""
    alphabet = [" ", "\t", "\n", "\r", "\f", "\v", "a", "é", "\xa0", "\u2028", "\x85"]
    for length in range(5):
        for characters in itertools.product(alphabet, repeat=length):
            text = "".join(characters)
            assert _collapsed(text) == _COLLAPSIBLE.sub(" ", text), repr(text)
