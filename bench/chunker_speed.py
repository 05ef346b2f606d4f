"""`markdown-simple@1` with and without the cl100k substring counter (`pipeline/tokens.CL100K`):
seconds to chunk, best of `--repeats`, and a check that both give the same chunks.

Documents: the 1,800-chunk plain text of `bench/embed_throughput.py`; five generated 50-page
PDFs (testing/pdfgen, as `bench/many_documents.py` makes them) and every real corpus PDF the
local parser converts (`../shared/corpus/real`), converted with the local parser's rules.
Rerun: `.venv/bin/python bench/chunker_speed.py [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import CORPUS
from bench.embed_throughput import document
from docingest.clients.pdf_markdown import pdf_to_markdown
from docingest.domain.errors import ParseError
from docingest.pipeline import chunker
from docingest.pipeline.normalize import normalize_markdown
from docingest.pipeline.tokens import CL100K, count_tokens
from docingest.testing.pdfgen import make_pdf


def markdown_of(data: bytes) -> str | None:
    try:
        return normalize_markdown(pdf_to_markdown(data, max_pages=1000).markdown)
    except ParseError:
        return None


def chunk_all(
    docs: list[str], counter: chunker.SubstringCounter | None
) -> list[list[chunker.Chunk]]:
    return [chunker.chunk_markdown(d, count_tokens=count_tokens, counter=counter) for d in docs]


def best(docs: list[str], counter: chunker.SubstringCounter | None, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        chunk_all(docs, counter)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    generated = [markdown_of(make_pdf(900_000 + seed, pages=50)) for seed in range(5)]
    real = [markdown_of(p.read_bytes()) for p in sorted((CORPUS / "real").glob("*.pdf"))]
    sets = {
        "embed_throughput document (1,800 chunks)": [document(1800)],
        "5 generated 50-page PDFs": [m for m in generated if m],
        f"{sum(1 for m in real if m)} real corpus PDFs": [m for m in real if m],
    }
    print("target 400, max 512 cl100k tokens; seconds to chunk, best of", args.repeats)
    for name, docs in sets.items():
        fast = chunk_all(docs, CL100K)
        same = "same chunks" if chunk_all(docs, None) == fast else "CHUNKS DIFFER"
        t_plain, t_fast = best(docs, None, args.repeats), best(docs, CL100K, args.repeats)
        chunks = sum(len(c) for c in fast)
        print(
            f"{name}: {chunks} chunks; recounting {t_plain:.3f} s, with CL100K {t_fast:.3f} s;"
            f" {same}"
        )


if __name__ == "__main__":
    main()
