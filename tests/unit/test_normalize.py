from __future__ import annotations

import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from docingest.pipeline.normalize import normalize_markdown as norm


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # line endings
        ("a\r\nb\rc\n", "a\nb\nc\n"),
        ("a\x0cb\u2028c", "a\nb\nc\n"),
        # blank lines: at most one in a row, none at start or end
        ("\n\n\na\n\n\n\nb\n\n\n", "a\n\nb\n"),
        ("a\n \t \n\t\nb", "a\n\nb\n"),
        # trailing spaces
        ("a  \nb\t\n", "a\nb\n"),
        # headings
        ("##Title", "## Title\n"),
        ("#   T", "# T\n"),
        ("  ###\tDeep  title  ", "### Deep title\n"),
        ("######x", "###### x\n"),
        ("####### seven is not a heading", "####### seven is not a heading\n"),
        ("##", "##\n"),
        # images and links
        ("see ![logo](http://x/logo.png) here", "see ![img] here\n"),
        ("see [the plan](https://example.com/p?a=1) now", "see [the plan] now\n"),
        ("[wiki](https://w.org/A_(b)) end", "[wiki] end\n"),
        ("[![badge](b.svg)](https://ci)", "[![img]]\n"),
        ("[a](b)(c)", "[a]\n"),
        ("[x [y] z](u) and ![a [b]](c)", "[x [y] z] and ![img]\n"),
        ("[a](b(c)) [d](e f) ![g](h i)", "[a] [d](e f) ![g](h i)\n"),
        ("![no destination] and [] ( x )", "![no destination] and [] ( x )\n"),
        ("no [link] here (really)", "no [link] here (really)\n"),
        # runs of spaces and tabs outside code
        ("a   b\t\tc", "a b c\n"),
        ("    indented paragraph", "indented paragraph\n"),
        # invisible characters
        ("co\u00adpay\u200b \ufeffplan\u2060s\u200d", "copay plans\n"),
        ("a\x00b\x07c\u202ed", "abcd\n"),
        ("no\u00a0break\u3000space", "no break space\n"),
        # final newline
        ("text", "text\n"),
        ("text\n\n\n", "text\n"),
        ("", ""),
        ("  \n\t\n\u200b\n", ""),
    ],
)
def test_rules(raw: str, expected: str) -> None:
    assert norm(raw) == expected


def test_bullets_glyphs_and_nesting_from_2_and_4_space_indents() -> None:
    raw = "* one\n    + two\n        • three\n    - two b\n* top\n"
    assert norm(raw) == "- one\n  - two\n    - three\n  - two b\n- top\n"
    two_space = "- one\n  * two\n    * three\n"
    assert norm(two_space) == "- one\n  - two\n    - three\n"


def test_bullet_tab_indent_and_first_item_level_zero() -> None:
    assert norm("   * first\n\t* nested\n") == "- first\n  - nested\n"
    assert norm("-\tx") == "- x\n"


def test_bullet_nesting_survives_blank_lines_but_not_paragraphs() -> None:
    assert norm("- a\n\n    - b\n") == "- a\n\n  - b\n"
    assert norm("- a\nplain\n    - b\n") == "- a\nplain\n- b\n"


def test_ordered_items_keep_their_marker_and_nest() -> None:
    assert norm("1. first\n    2) sub\n3. second") == "1. first\n  2) sub\n3. second\n"


def test_marker_without_text_or_space_is_not_a_bullet() -> None:
    assert norm("*bold*") == "*bold*\n"
    assert norm("-") == "-\n"
    assert norm("--- ") == "---\n"


def test_fenced_code_is_kept_except_line_ends_and_trailing_spaces() -> None:
    raw = (
        "text   here\n"
        "```python\n"
        "x  =  1\t \n"
        "\tif x:   # comment\n"
        "# not a heading\n"
        "* not a bullet\n"
        "[k](v)\n"
        "```\n"
        "after  code\n"
    )
    expected = (
        "text here\n"
        "```python\n"
        "x  =  1\n"
        "\tif x:   # comment\n"
        "# not a heading\n"
        "* not a bullet\n"
        "[k](v)\n"
        "```\n"
        "after code\n"
    )
    assert norm(raw) == expected


def test_unclosed_fence_runs_to_the_end() -> None:
    assert norm("```\na  b\n##x") == "```\na  b\n##x\n"


def test_page_markers_survive_unchanged() -> None:
    raw = "<!-- page 1 -->\n\n#Intro\n\n\n<!-- page 2 -->\n\ntext  more\n<!-- page 10 -->\n"
    out = norm(raw)
    assert out == ("<!-- page 1 -->\n\n# Intro\n\n<!-- page 2 -->\n\ntext more\n<!-- page 10 -->\n")
    for n in (1, 2, 10):
        assert f"<!-- page {n} -->\n" in out


_FRAGMENTS = st.sampled_from(
    [
        "#", "##", "#######", " ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", "\r",
        "-", "*", "+", "•", "1.", "2)", "[", "]", "(", ")", "!", "```", "`",
        "a", "word", ".", "\u200b", "\u00ad", "\ufeff", "\u00a0", "\u2028", "\x0c", "\x00",
        "<!-- page 2 -->", "[t](u)", "![a](b)", "é", "\u3000", "\U0001f642",
        "](", "![", "(y ", "[x](y z)", "((", "))",
    ]
)  # fmt: skip
_MARKDOWNISH = st.lists(_FRAGMENTS, max_size=40).map("".join)


@settings(max_examples=600)
@given(st.one_of(_MARKDOWNISH, st.text()))
@example("- a\n        - b\n    - c\n")
@example("\u00a0```\nx\n```")
@example("[a](b)(c)(d)")
@example("[x](y ![(](u) )")
@example("[[[t](u)](v)](w)")
def test_idempotent(raw: str) -> None:
    once = norm(raw)
    assert norm(once) == once


@settings(max_examples=300)
@given(st.one_of(_MARKDOWNISH, st.text()))
def test_output_shape(raw: str) -> None:
    out = norm(raw)
    assert out == "" or (out.endswith("\n") and not out.endswith("\n\n"))
    assert "\n\n\n" not in out
    assert "\r" not in out
    assert not out.startswith("\n")
    for line in out.split("\n"):
        assert line == line.rstrip(" \t")
    for ch in "\u200b\u200c\u200d\u2060\ufeff\u00ad\x00":
        assert ch not in out


@pytest.mark.parametrize(
    "hostile",
    [
        "[a]" + "(b)" * 100_000,
        "[" * 20_000 + "t" + "](u)" * 20_000,
        "[a](" * 50_000,
        "](" * 200_000,
        "x" * 2_000_000,
        "\u200b" * 300_000,
    ],
)
def test_hostile_lines_are_linear(hostile: str) -> None:
    started = time.perf_counter()
    out = norm(hostile)
    assert time.perf_counter() - started < 3
    assert norm(out) == out
