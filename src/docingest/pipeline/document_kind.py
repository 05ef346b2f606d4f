"""What kind of insurance document a parsed text is, read from its title; "unknown" otherwise.

Insurance documents name themselves: a Summary of Benefits and Coverage must carry that title
(45 CFR 147.200), a Medicare plan sends an "Evidence of Coverage" and a "Summary of Benefits",
a drug list calls itself a formulary or drug list, and so on. The title stands near the top,
while the same words can appear later as cross-references ("see your Summary of Benefits and
Coverage"). So only the opening of the text is read, and the signature found *first* wins
(at the same place, the longer one: "summary of benefits and coverage" over "summary of
benefits"). No signature, no guess: the kind is "unknown". Search reports the kind next to
each result so an assistant can say what it is citing; it never filters on it.
"""

from __future__ import annotations

import re
from typing import Final

UNKNOWN: Final = "unknown"
#: characters of normalized text searched for a title (a cover page or two)
HEAD_CHARS: Final = 3000

# (kind, phrase) pairs; phrases are lower case with single spaces.
_SIGNATURES: Final[tuple[tuple[str, str], ...]] = (
    ("sbc", "summary of benefits and coverage"),
    ("medicare-sob", "summary of benefits"),
    ("eoc", "evidence of coverage"),
    ("glossary", "glossary of health coverage and medical terms"),
    ("glossary", "uniform glossary"),
    ("formulary", "formulary"),
    ("formulary", "drug list"),
    ("eob", "explanation of benefits"),
    ("policy", "summary plan description"),
    ("policy", "outline of coverage"),
    ("policy", "policy wording"),
    ("policy", "your dental policy"),
    ("claim-form", "claim form"),
    ("provider-directory", "provider directory"),
)
KINDS: Final = tuple(sorted({kind for kind, _ in _SIGNATURES} | {UNKNOWN}))

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _normalized_head(text: str) -> str:
    return " " + _NON_ALNUM.sub(" ", text[: HEAD_CHARS * 2].lower())[:HEAD_CHARS] + " "


def classify(text: str) -> str:
    """The kind named by the earliest title signature in the opening of `text`."""
    head = _normalized_head(text)
    best: tuple[int, int, str] | None = None  # (position, -phrase length, kind)
    for kind, phrase in _SIGNATURES:
        position = head.find(f" {phrase} ")
        if position >= 0:
            candidate = (position, -len(phrase), kind)
            best = candidate if best is None else min(best, candidate)
    return best[2] if best else UNKNOWN
