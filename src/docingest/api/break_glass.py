"""Emergency access (45 CFR 164.312(a)(2)(ii)): a break-glass token reads any user's document
and job metadata only while its grant row is active, checked on every request; every such read
is audited (`break_glass.read`, api/audit.py) and counted, and the count alerts
(DocingestBreakGlassUsed). Writes, lists and search refuse these tokens (403, api/deps.py)."""

from __future__ import annotations

from prometheus_client import Counter

from docingest.api.auth import Principal, unauthorized
from docingest.api.errors import ApiError
from docingest.store import break_glass
from docingest.store.db import DictConn

READS = Counter(
    "docingest_break_glass_reads_total", "Reads served under a break-glass grant (alerts on use)"
)


def refuse_writes(principal: Principal) -> None:
    """Break-glass tokens only read single documents and jobs."""
    if principal.grant_id is not None:
        raise ApiError(403, "forbidden", "break-glass tokens may only read documents and jobs")


async def require_active_grant(conn: DictConn, principal: Principal) -> None:
    """401 unless the token's grant exists for its operator, is unrevoked and unexpired."""
    if principal.grant_id is not None and not await break_glass.is_active(
        conn, principal.grant_id, principal.user_id
    ):
        raise unauthorized("break-glass grant is not active")
