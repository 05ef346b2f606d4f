"""The admin dashboard as one self-contained HTML page: inline CSS and SVG bars, no scripts,
no external assets, no build step. Shows counts, error codes and service names only.

Every value is escaped, although none comes from users (statuses, codes and services are
ours); the page must stay safe if that ever changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from docingest.domain.circuit import CircuitState
from docingest.domain.states import FAILED, PIPELINE
from docingest.store.dashboard_stats import DashboardStats
from docingest.store.queue_stats import QueueSnapshot

_BAR_W = 320  # px of the longest bar

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
h1{font-size:20px;margin:0 0 16px}h2{font-size:15px;margin:0 0 8px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 16px;
margin:0 0 16px;max-width:760px}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.failed rect{fill:#c8453b}rect{fill:#3b6fc8}
.closed{color:#2d7d46}.half_open{color:#b7791f}.open{color:#c8453b;font-weight:600}
.stats{display:flex;gap:24px}.stats div b{display:block;font-size:22px}
"""


def _bar(n: int, top: int) -> str:
    width = max(1, round(_BAR_W * n / top)) if n and top else 0  # a non-zero count shows
    return f'<svg width="{_BAR_W}" height="12" aria-hidden="true"><rect width="{width}" height="12"/></svg>'


def _bar_rows(rows: Iterable[tuple[str, int, str]]) -> str:
    """`rows`: (label, count, css class) -> table rows with a bar scaled to the largest."""
    items = list(rows)
    top = max((n for _, n, _ in items), default=0)
    return "".join(
        f'<tr class="{escape(cls)}" data-key="{escape(label)}"><td>{escape(label)}</td>'
        f'<td class="n">{n}</td><td>{_bar(n, top)}</td></tr>'
        for label, n, cls in items
    )


def _funnel(snap: QueueSnapshot) -> str:
    rows = [(s.value, snap.by_status[s], "step") for s in PIPELINE]
    rows += [(s.value, snap.by_status[s], "failed") for s in sorted(FAILED)]
    return f'<section id="funnel"><h2>Jobs by status</h2><table>{_bar_rows(rows)}</table></section>'


def _queue(snap: QueueSnapshot, stats: DashboardStats) -> str:
    tiles = [
        ("queue-depth", "Claimable now", str(snap.depth)),
        ("oldest-age", "Oldest claimable wait (s)", f"{snap.oldest_claimable_s:.0f}"),
        ("live-workers", "Workers with a live lease", str(snap.live_workers)),
    ]
    tiles += [
        (f"completed-{m}m", f"Completed, last {m} min", str(n))
        for m, n in sorted(stats.completed.items())
    ]
    body = "".join(f'<div id="{i}">{escape(label)}<b>{v}</b></div>' for i, label, v in tiles)
    return f'<section id="queue"><h2>Queue and throughput</h2><div class="stats">{body}</div></section>'


def _failures(stats: DashboardStats) -> str:
    if not stats.failures_by_code:
        return '<section id="failures"><h2>Failed jobs by error code</h2><p>None.</p></section>'
    rows = _bar_rows((code, n, "failed") for code, n in stats.failures_by_code)
    return (
        f'<section id="failures"><h2>Failed jobs by error code</h2><table>{rows}</table></section>'
    )


def _circuits(stats: DashboardStats) -> str:
    if not stats.circuits:
        body = "<p>No circuit has been used yet (all closed).</p>"
    else:
        rows = "".join(
            f'<tr data-key="{escape(c.service)}"><td>{escape(c.service)}</td>'
            f'<td class="{escape(c.state.value)}">{escape(c.state.value)}</td>'
            f'<td class="n">{c.failures}</td><td>{escape(c.reason or "")}</td></tr>'
            for c in stats.circuits
        )
        head = "<tr><th>Service</th><th>State</th><th>Failures</th><th>Reason</th></tr>"
        body = f"<table>{head}{rows}</table>"
    return f'<section id="circuits"><h2>Circuit breakers</h2>{body}</section>'


def render(snap: QueueSnapshot, stats: DashboardStats) -> str:
    opened = sum(c.state is CircuitState.OPEN for c in stats.circuits)
    title = "docingest dashboard" + (f" ({opened} circuit open)" if opened else "")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f"{_funnel(snap)}{_queue(snap, stats)}{_failures(stats)}{_circuits(stats)}"
        "</body></html>"
    )
