"""Estimated embedding prices, USD per million input tokens.

Source: OpenAI's public price list (openai.com/api/pricing, embeddings; unchanged from the
2024 launch of text-embedding-3 through 2025). They are estimates for reporting, not a bill:
`DOCINGEST_EMBED_PRICE_PER_MTOK` overrides them (other providers, contracts, price changes).
"""

from __future__ import annotations

PRICE_PER_MTOK_USD: dict[str, float] = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
    "hash-lexical": 0.0,  # the offline embedder costs nothing
}


def price_per_mtok(model: str, override: float | None = None) -> float | None:
    """USD per million tokens for `model`; None when unknown and not configured."""
    return override if override is not None else PRICE_PER_MTOK_USD.get(model)


def cost_usd(tokens: int, price: float | None) -> float:
    """Estimated cost of `tokens` at `price` per million (0 when the price is unknown)."""
    return 0.0 if price is None else tokens * price / 1_000_000
