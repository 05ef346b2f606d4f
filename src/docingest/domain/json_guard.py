"""How deeply a JSON text nests, found without parsing it (pure).

Python's `json.loads` recurses once per level and raises RecursionError near 1,000 levels;
no body we accept nests deeper than a handful. Counting brackets outside strings is linear,
allocates nothing per level, and answers before any parser runs.
"""

from __future__ import annotations

import re

#: deeper bodies are refused before parsing; ours nest at most 3 levels
MAX_JSON_DEPTH = 32

# a whole string literal (escapes included), or one bracket outside strings
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth(data: bytes) -> int:
    """The deepest nesting of `[`/`{` outside string literals. Malformed input gets a number
    too (the parser refuses it later); an unterminated string only ever makes it larger."""
    depth = deepest = 0
    for match in _TOKEN.finditer(data):
        token = match.group()
        if token[0] in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token[0] in b"]}":
            depth = max(depth - 1, 0)
    return deepest


def too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    return json_depth(data) > limit
