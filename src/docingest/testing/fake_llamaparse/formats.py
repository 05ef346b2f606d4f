"""A finished job's markdown in the v1 result shapes: pages (JSON) and plain text."""

from __future__ import annotations

import re
from typing import Any

_PAGE_SPLIT = re.compile(r"^<!-- page (\d+) -->$", re.MULTILINE)


def pages(markdown: str) -> list[dict[str, Any]]:
    parts = _PAGE_SPLIT.split(markdown)
    pages: list[dict[str, Any]] = []
    for number, text in zip(parts[1::2], parts[2::2], strict=True):
        md = text.strip("\n")
        pages.append({"page": int(number), "md": md, "text": plain(md), "images": []})
    return pages or [{"page": 1, "md": markdown, "text": plain(markdown), "images": []}]


def plain(markdown: str) -> str:
    return re.sub(r"^#+ ", "", markdown, flags=re.MULTILINE)
