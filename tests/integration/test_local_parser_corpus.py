"""local_parser.parse_pdf over every file of the shared corpus, plus the sandbox limits.

Each MANIFEST.tsv row is one test. The parses themselves run once per module, two at a
time, in their own event loop (see ``corpus_outcomes``); each row's test then checks its
file's outcome against the manifest's ``expect`` column.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from docingest.clients import local_parser
from docingest.clients.local_parser import LocalParser, ParsedPdf, parse_pdf
from docingest.domain.errors import ErrorCode, ParseError
from tests.helpers import child_processes

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.tsv"
MARKER_RE = re.compile(r"^<!-- page (\d+) -->$", re.MULTILINE)
#: wall-clock limit per file in these tests; the slowest corpus file needs a few seconds
TIMEOUT_S = 60.0
CONCURRENCY = 2

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not MANIFEST.is_file(), reason=f"shared corpus not found at {CORPUS}"),
]


def _rows() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = _rows()


@dataclass(frozen=True)
class Outcome:
    result: ParsedPdf | BaseException
    elapsed_s: float


async def _parse_all(files: list[str]) -> dict[str, Outcome]:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    outcomes: dict[str, Outcome] = {}

    async def one(name: str) -> None:
        data = (CORPUS / name).read_bytes()
        async with semaphore:
            started = time.monotonic()
            try:
                result: ParsedPdf | BaseException = await parse_pdf(data, timeout_s=TIMEOUT_S)
            except Exception as exc:  # recorded, then judged by the row's test
                result = exc
            outcomes[name] = Outcome(result, time.monotonic() - started)

    await asyncio.gather(*(one(name) for name in files))
    return outcomes


@pytest.fixture(scope="module")
def corpus_outcomes(request: pytest.FixtureRequest) -> dict[str, Outcome]:
    """Parse the files of the selected rows once, concurrently (bounded)."""
    selected: list[str] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.path != request.path or callspec is None or "row" not in callspec.params:
            continue
        row = callspec.params["row"]
        if row["expect"] != "rejected:415":
            selected.append(row["file"])
    return asyncio.run(_parse_all(selected))


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_corpus_file(row: dict[str, str], corpus_outcomes: dict[str, Outcome]) -> None:
    expect = row["expect"]
    if expect == "rejected:415":
        # refused at upload by magic bytes; the parser never sees it
        head = (CORPUS / row["file"]).read_bytes()[: 1024 + 5]
        assert b"%PDF-" not in head
        return
    outcome = corpus_outcomes[row["file"]]
    assert outcome.elapsed_s < TIMEOUT_S + 5
    result = outcome.result
    if isinstance(result, BaseException) and not isinstance(result, ParseError):
        raise AssertionError(f"unexpected {type(result).__name__}") from result

    if expect == "complete":
        assert isinstance(result, ParsedPdf), f"expected markdown, got {result!r}"
        _assert_complete(result, int(row["pages"]))
    elif expect.startswith("failed_parse:"):
        assert isinstance(result, ParseError), f"expected a ParseError, got {result!r}"
        assert result.code == ErrorCode(expect.split(":", 1)[1])
    elif expect == "failed_parse":
        assert isinstance(result, ParseError), f"expected a ParseError, got {result!r}"
    elif expect in ("any_terminal", "accepted:any_terminal"):
        if isinstance(result, ParsedPdf):
            _assert_well_formed(result)
    else:
        pytest.fail(f"unknown expect value {expect!r}")


def _assert_well_formed(parsed: ParsedPdf) -> None:
    assert [int(n) for n in MARKER_RE.findall(parsed.markdown)] == list(range(1, parsed.pages + 1))
    assert parsed.markdown.endswith("\n")
    assert 0 <= parsed.empty_pages < parsed.pages


def _assert_complete(parsed: ParsedPdf, pages: int) -> None:
    assert parsed.pages == pages
    _assert_well_formed(parsed)
    text = MARKER_RE.sub("", parsed.markdown)
    assert sum(ch.isalnum() for ch in text) >= 32


# --- limits -----------------------------------------------------------------------------


def _server_pids() -> list[int]:
    """Pids of this process's parse servers (Linux /proc)."""
    return [pid for pid, cmdline in child_processes(os.getpid()) if b"parse_server" in cmdline]


def _live_children() -> list[int]:
    """Pids of the parse children still running (children of this process's parse server)."""
    return [pid for server in _server_pids() for pid, _ in child_processes(server)]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@needs_proc
async def test_timeout_kills_the_child_and_reports_parse_limit() -> None:
    data = (CORPUS / "real/eoc_medicare_scan_classic_hmo_2025.pdf").read_bytes()
    started = time.monotonic()
    with pytest.raises(ParseError) as info:
        await parse_pdf(data, timeout_s=0.05)
    assert info.value.code is ErrorCode.PARSE_LIMIT
    assert time.monotonic() - started < 5
    assert list(_live_children()) == []


async def test_memory_limit_stops_the_child_with_parse_limit() -> None:
    data = (CORPUS / "real/eoc_medicare_scan_classic_hmo_2025.pdf").read_bytes()
    with pytest.raises(ParseError) as info:
        await parse_pdf(data, memory_mb=48, timeout_s=TIMEOUT_S)
    assert info.value.code is ErrorCode.PARSE_LIMIT


async def test_cpu_limit_kills_the_child() -> None:
    # the provider directory needs a few CPU seconds; one is allowed
    data = (CORPUS / "real/provider_directory_star_health_hospital_network_500p.pdf").read_bytes()
    limits = {
        "max_pages": 1000,
        "memory_mb": None,
        "cpu_seconds": 1,
        "max_page_chars": None,
        "max_document_chars": None,
    }
    with pytest.raises(ParseError) as info:
        await local_parser.parse_in_child(data, limits, timeout_s=TIMEOUT_S, max_output=1 << 30)
    assert info.value.code is ErrorCode.PARSE_LIMIT
    assert re.search(r"killed by (SIGXCPU|SIGKILL)", info.value.message)


async def test_decompression_bomb_finishes_within_limits() -> None:
    data = (CORPUS / "hostile/decompression_bomb_jbig2_content_streams.pdf").read_bytes()
    started = time.monotonic()
    try:
        parsed = await parse_pdf(data, timeout_s=30.0, memory_mb=512)
    except ParseError as exc:
        assert exc.code in {ErrorCode.PARSE_LIMIT, ErrorCode.NO_TEXT, ErrorCode.CORRUPT_PDF}
    else:
        _assert_well_formed(parsed)
        assert parsed.pages == 1
    assert time.monotonic() - started < 30.0


async def test_too_many_pages_is_refused_quickly() -> None:
    data = (CORPUS / "real/provider_directory_star_health_hospital_network_500p.pdf").read_bytes()
    started = time.monotonic()
    with pytest.raises(ParseError) as info:
        await parse_pdf(data, max_pages=100, timeout_s=TIMEOUT_S)
    assert info.value.code is ErrorCode.TOO_MANY_PAGES
    assert time.monotonic() - started < 2.0  # far less than extracting 500 pages


async def test_event_loop_stays_responsive_while_parsing() -> None:
    data = (CORPUS / "real/eoc_medicare_scan_classic_hmo_2025.pdf").read_bytes()
    parse = asyncio.create_task(LocalParser(timeout_s=TIMEOUT_S).parse(data))
    longest_gap = 0.0
    ticks = 0
    last = time.monotonic()
    while not parse.done():
        await asyncio.sleep(0.01)  # pacing, not synchronization: we measure loop stalls
        now = time.monotonic()
        longest_gap = max(longest_gap, now - last)
        last = now
        ticks += 1
    parsed = await parse
    assert parsed.pages == 232
    assert ticks > 10
    assert longest_gap < 0.5


def test_local_parser_interface() -> None:
    parser = LocalParser(max_pages=5, timeout_s=3.0, memory_mb=256)
    assert parser.name == "local-pdfium"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", parser.version)
    assert (parser.max_pages, parser.timeout_s, parser.memory_mb) == (5, 3.0, 256)
    with pytest.raises(ValueError):
        LocalParser(timeout_s=0)


@pytest.mark.parametrize(
    ("returncode", "stdout", "code"),
    [
        (-9, b"", ErrorCode.PARSE_LIMIT),  # SIGKILL (e.g. the OOM killer)
        (-11, b"", ErrorCode.PARSE_LIMIT),  # SIGSEGV in PDFium
        (-24, b"", ErrorCode.PARSE_LIMIT),  # SIGXCPU from RLIMIT_CPU
        (0, b"not json", ErrorCode.CORRUPT_PDF),
        (0, b'{"ok": true, "markdown": 3}', ErrorCode.CORRUPT_PDF),
        (0, b'{"ok": false, "code": "nonsense", "message": "x"}', ErrorCode.CORRUPT_PDF),
        (0, b'{"ok": false, "code": "encrypted", "message": "x"}', ErrorCode.ENCRYPTED),
    ],
)
def test_child_status_mapping(returncode: int, stdout: bytes, code: ErrorCode) -> None:
    with pytest.raises(ParseError) as info:
        local_parser._interpret(returncode, stdout, pid=0)
    assert info.value.code is code
