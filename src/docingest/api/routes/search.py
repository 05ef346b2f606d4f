"""`POST /v1/search`: cosine ranking over the caller's own chunks only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from docingest.api import audit
from docingest.api.deps import ConnDep, PrincipalDep, StateDep
from docingest.store import events
from docingest.store.vector_search import search

router = APIRouter(prefix="/v1", tags=["search"])


class SearchRequest(BaseModel):
    """Strict types: `k: true` or `k: "5"` are malformed, not coerced (422)."""

    query: Annotated[str, Field(min_length=1, max_length=4000, strict=True)]
    k: Annotated[int, Field(ge=1, le=100, strict=True)] = 10


@router.post("/search")
async def search_chunks(
    request: Request, body: SearchRequest, state: StateDep, principal: PrincipalDep, conn: ConnDep
) -> dict[str, Any]:
    e = state.embedder
    [vector] = (await e.embed([body.query])).vectors
    results = await search(
        conn,
        principal.user_id,
        vector,
        model=e.model,
        version=e.version,
        k=body.k,
        strategy=state.vector_search,
    )
    await events.record(
        conn,
        actor=principal.actor,
        action="search",
        correlation_id=audit.correlation_id(request),
        detail={"k": body.k, "results": len(results)},
    )
    return {"results": results}
