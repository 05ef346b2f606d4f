from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docingest.pipeline.chunker import (
    CHUNKER_NAME,
    CHUNKER_VERSION,
    Chunk,
    chunk_markdown,
    iter_chunks,
)
from docingest.pipeline.tokens import CL100K, count_tokens
from tests.conftest import EXAMPLES

MARKER = re.compile(r"[ \t]*<!-- page \d{1,9} -->[ \t\r]*")


def _tokens(chunk: Chunk) -> int:
    value = chunk.meta["tokens"]
    assert isinstance(value, int)
    return value


def _squash(text: str) -> str:
    return "".join(text.split())


def _without_markers(md: str) -> str:
    return "\n".join(line for line in md.split("\n") if not MARKER.fullmatch(line))


def _check_chunks(
    md: str, chunks: list[Chunk], count: Callable[[str], int], max_tokens: int
) -> None:
    assert [c.ord for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text.strip(), "empty or whitespace-only chunk"
        assert count(c.text) <= max_tokens
        assert c.meta["tokens"] == count(c.text)
        assert isinstance(c.meta["page_start"], int)
        assert isinstance(c.meta["page_end"], int)
        assert c.meta["page_start"] <= c.meta["page_end"]
        assert isinstance(c.meta["heading_path"], list)
        assert "<!-- page" not in c.text or not any(MARKER.fullmatch(x) for x in c.text.split("\n"))
    # Nothing but whitespace and page markers is lost, nothing is duplicated or reordered.
    assert _squash("".join(c.text for c in chunks)) == _squash(_without_markers(md))


DOC = """<!-- page 1 -->

# Summary of Benefits

This summary explains your coverage.

## Deductibles

The annual deductible is $1,500 per person.

<!-- page 2 -->

### In-network

You pay 20% coinsurance after the deductible.

- Primary care: $25 copay
- Specialist: $50 copay

<!-- page 3 -->

## Prescription Drugs

Generic drugs cost $10.

# Appeals

How to file an appeal.
"""


def test_constants() -> None:
    assert (CHUNKER_NAME, CHUNKER_VERSION) == ("markdown-simple", "1")


def test_headings_pages_and_paths_on_a_crafted_document() -> None:
    chunks = chunk_markdown(DOC, count_tokens=count_tokens)
    got = [
        (c.text.split("\n")[0], c.meta["heading_path"], c.meta["page_start"], c.meta["page_end"])
        for c in chunks
    ]
    assert got == [
        ("# Summary of Benefits", ["Summary of Benefits"], 1, 1),
        ("## Deductibles", ["Summary of Benefits", "Deductibles"], 1, 1),
        ("### In-network", ["Summary of Benefits", "Deductibles", "In-network"], 2, 2),
        ("## Prescription Drugs", ["Summary of Benefits", "Prescription Drugs"], 3, 3),
        ("# Appeals", ["Appeals"], 3, 3),
    ]
    assert chunks[2].text == (
        "### In-network\n\nYou pay 20% coinsurance after the deductible.\n\n"
        "- Primary care: $25 copay\n- Specialist: $50 copay"
    )
    assert all("<!-- page" not in c.text for c in chunks)
    _check_chunks(DOC, chunks, count_tokens, 512)


def test_text_spanning_pages_and_no_markers() -> None:
    md = "intro\n\n<!-- page 4 -->\n\nmore\n\n<!-- page 5 -->\n\nend\n"
    [chunk] = chunk_markdown(md, count_tokens=count_tokens)
    assert (chunk.meta["page_start"], chunk.meta["page_end"]) == (1, 5)
    assert chunk.text == "intro\n\nmore\n\nend"
    [plain] = chunk_markdown("just text", count_tokens=count_tokens)
    assert plain.meta == {"page_start": 1, "page_end": 1, "heading_path": [], "tokens": 2}


def test_consecutive_headings_stay_with_their_text() -> None:
    md = "# Part A\n\n## Section 1\n\nBody text.\n\n## Section 2\n\nMore.\n"
    chunks = chunk_markdown(md, count_tokens=count_tokens)
    assert [c.text for c in chunks] == [
        "# Part A\n\n## Section 1\n\nBody text.",
        "## Section 2\n\nMore.",
    ]
    assert chunks[0].meta["heading_path"] == ["Part A", "Section 1"]
    assert chunks[1].meta["heading_path"] == ["Part A", "Section 2"]


def test_heading_inside_code_fence_is_not_a_heading() -> None:
    md = "# Real\n\n```\n# comment\n\ncode line\n```\n"
    [chunk] = chunk_markdown(md, count_tokens=count_tokens)
    assert chunk.meta["heading_path"] == ["Real"]
    assert "# comment\n\ncode line" in chunk.text


def test_packing_respects_target_and_splits_long_sections() -> None:
    paragraphs = [f"Paragraph {i} says the plan covers item number {i}." for i in range(200)]
    md = "# Long\n\n" + "\n\n".join(paragraphs) + "\n"
    chunks = chunk_markdown(md, count_tokens=count_tokens, target_tokens=100, max_tokens=128)
    assert len(chunks) > 10
    assert all(_tokens(c) <= 128 for c in chunks)
    assert all(c.meta["heading_path"] == ["Long"] for c in chunks)
    # paragraphs are never cut when they fit: every chunk starts at a paragraph start
    assert all(c.text.startswith(("# Long", "Paragraph")) for c in chunks)
    assert sum(_tokens(c) for c in chunks) > 0.7 * len(chunks) * 100


def test_oversized_paragraph_is_cut_at_sentences() -> None:
    sentence = "The plan pays eighty percent of allowed charges after the deductible. "
    md = "## Coinsurance\n\n" + sentence * 60
    chunks = chunk_markdown(md, count_tokens=count_tokens, target_tokens=60, max_tokens=80)
    assert len(chunks) > 5
    assert all(c.text.endswith("deductible.") for c in chunks)
    _check_chunks(md, chunks, count_tokens, 80)


def test_deterministic() -> None:
    a = chunk_markdown(DOC * 20, count_tokens=count_tokens, target_tokens=50, max_tokens=64)
    b = chunk_markdown(DOC * 20, count_tokens=count_tokens, target_tokens=50, max_tokens=64)
    assert a == b
    assert len(a) > 20


def test_empty_and_blank_inputs_give_no_chunks() -> None:
    assert chunk_markdown("", count_tokens=count_tokens) == []
    assert chunk_markdown("\n\n  \n<!-- page 2 -->\n\n", count_tokens=count_tokens) == []


@pytest.mark.parametrize(("target", "maximum"), [(0, 10), (11, 10), (-1, -1)])
def test_rejects_bad_limits(target: int, maximum: int) -> None:
    with pytest.raises(ValueError):
        chunk_markdown("x", count_tokens=count_tokens, target_tokens=target, max_tokens=maximum)


def test_single_character_over_the_limit_is_an_error() -> None:
    with pytest.raises(ValueError):
        chunk_markdown("abc", count_tokens=lambda s: 5 * len(s), target_tokens=2, max_tokens=4)


def _superadditive(text: str) -> int:
    """A counter for which joined blocks cost more than the sum of their parts."""
    return len(text) + text.count("\n") ** 2


def test_underestimated_chunks_are_repacked_with_exact_counts() -> None:
    block = "line one\nline two\nline three"  # 28 chars, 2 newlines: 32 "tokens"
    md = "\n\n".join([block] * 10)
    # The estimate for two blocks is 32 + 6 + 32 = 70 <= 80, but the exact count is 94 > 80.
    assert _superadditive(block + "\n\n" + block) == 94
    chunks = chunk_markdown(md, count_tokens=_superadditive, target_tokens=80, max_tokens=80)
    assert [c.text for c in chunks] == [block] * 10
    assert all(c.meta["tokens"] == 32 for c in chunks)


def test_two_megabyte_single_line_finishes_within_bounds() -> None:
    md = "abcdefghij0123456789" * 100_000  # 2 MB, no spaces, no sentences
    started = time.perf_counter()
    chunks = chunk_markdown(md, count_tokens=count_tokens)
    assert time.perf_counter() - started < 20
    assert len(chunks) > 1000
    assert "".join(c.text for c in chunks) == md
    assert all(0 < _tokens(c) <= 512 for c in chunks)
    for c in chunks[:50]:
        assert count_tokens(c.text) == c.meta["tokens"]


def test_generator_is_lazy() -> None:
    seen = 0

    def counting(text: str) -> int:
        nonlocal seen
        seen += len(text)
        return count_tokens(text)

    md = ("A sentence about benefits. " * 40 + "\n\n") * 5000  # about 5.4 MB
    first = next(iter_chunks(md, count_tokens=counting))
    assert first.ord == 0
    assert seen < 100_000  # only the beginning was read


_LINES = st.one_of(
    st.sampled_from(
        [
            "", "", "# Title", "## Sub section", "### Deep", "#", "- bullet item",
            "  - nested item", "1. ordered", "```", "<!-- page 2 -->", "<!-- page 7 -->",
            "A sentence. Another one! A third?", "x" * 300, "word " * 120, "🙂" * 50,
        ]
    ),
    st.text(max_size=80).map(lambda s: s.replace("\r", "")),
    st.text(alphabet="ab .\n#-", max_size=200),
)  # fmt: skip
_MARKDOWNISH = st.lists(_LINES, max_size=30).map("\n".join)
# page-sized paragraphs (what a PDF's text layer without line structure gives): blocks over
# the limit, split where the counts say
_PROSE = [
    "The plan pays 80% of covered charges after the $1,500 deductible (in-network). " * 30,
    "Copay: $25 primary care; $50 specialist; 20% coinsurance for MRI/CT scans.\n" * 25,
    "Aastha Hospital 403/4 Aishwarya Complex, Maninagar (City - Ahmedabad) ,Gujarat ,380008 " * 20,
    "Le plan rembourse 80 % des frais couverts après la franchise. Médecin spécialiste: 50 $. "
    * 20,
    "don't can't we'll they're it's MEMBER'S PLAN'S " * 60,
]


@settings(max_examples=120, deadline=None)
@given(
    _MARKDOWNISH,
    st.integers(min_value=8, max_value=64),
    st.floats(min_value=0.1, max_value=1.0),
)
def test_max_tokens_is_honored_with_tiktoken(md: str, max_tokens: int, share: float) -> None:
    target = max(1, int(max_tokens * share))
    chunks = chunk_markdown(
        md, count_tokens=count_tokens, target_tokens=target, max_tokens=max_tokens
    )
    _check_chunks(md, chunks, count_tokens, max_tokens)
    assert chunks == chunk_markdown(
        md, count_tokens=count_tokens, target_tokens=target, max_tokens=max_tokens
    )


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=80, deadline=None)
@given(
    _MARKDOWNISH,
    st.integers(min_value=4, max_value=200),
    st.sampled_from([len, _utf8_len, _superadditive, lambda s: len(s.split()) + len(s) // 7]),
)
def test_max_tokens_is_honored_with_other_counters(
    md: str, max_tokens: int, count: Callable[[str], int]
) -> None:
    chunks = chunk_markdown(md, count_tokens=count, target_tokens=max_tokens, max_tokens=max_tokens)
    _check_chunks(md, chunks, count, max_tokens)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(_LINES, st.sampled_from(_PROSE)), max_size=40).map("\n".join),
    st.integers(min_value=8, max_value=300),
    st.floats(min_value=0.1, max_value=1.0),
)
def test_the_cl100k_counter_changes_no_cut(md: str, max_tokens: int, share: float) -> None:
    """`CL100K` answers the chunker's counts from counts already made: the chunks must be
    exactly those of counting every string again."""
    target = max(1, int(max_tokens * share))
    plain = chunk_markdown(
        md, count_tokens=count_tokens, target_tokens=target, max_tokens=max_tokens
    )
    fast = chunk_markdown(
        md, count_tokens=count_tokens, target_tokens=target, max_tokens=max_tokens, counter=CL100K
    )
    assert fast == plain


def test_the_cl100k_counter_on_the_bundled_examples() -> None:
    from docingest.clients.pdf_markdown import pdf_to_markdown
    from docingest.pipeline.normalize import normalize_markdown

    pdfs = sorted(EXAMPLES.glob("*.pdf"))
    assert pdfs
    for pdf in pdfs:
        md = normalize_markdown(pdf_to_markdown(pdf.read_bytes(), max_pages=100).markdown)
        for target, max_tokens in ((400, 512), (100, 128), (30, 40)):
            plain = chunk_markdown(
                md, count_tokens=count_tokens, target_tokens=target, max_tokens=max_tokens
            )
            fast = chunk_markdown(
                md,
                count_tokens=count_tokens,
                target_tokens=target,
                max_tokens=max_tokens,
                counter=CL100K,
            )
            assert fast == plain, pdf.name
