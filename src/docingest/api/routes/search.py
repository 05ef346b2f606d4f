"""`POST /v1/search`: hybrid, vector or text ranking over the caller's own chunks only, each
result citable (file name, pages, heading path, document kind; store/search.py)."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from docingest.api import audit
from docingest.api.deps import ConnDep, PrincipalDep, StateDep
from docingest.api.schemas import SearchResults, errors
from docingest.store import events
from docingest.store.db import spare_connection
from docingest.store.search import SearchMode, search

router = APIRouter(prefix="/v1", tags=["search"])


class SearchRequest(BaseModel):
    """Strict types: `k: true` or `k: "5"` are malformed, not coerced (422)."""

    query: Annotated[str, Field(min_length=1, max_length=4000, strict=True)]
    k: Annotated[int, Field(ge=1, le=100, strict=True)] = 10
    # strict: exactly one of the three names as a JSON string, nothing coerced. A Literal
    # compares by equality, so it is strict as it stands (FastAPI validates the decoded body
    # in Python mode, where a strict enum would refuse even the right string).
    mode: Literal["hybrid", "vector", "text"] = "hybrid"


@router.post(
    "/search", response_model=SearchResults, responses=errors(400, 401, 408, 413, 422, 429, 503)
)
async def search_chunks(
    request: Request, body: SearchRequest, state: StateDep, principal: PrincipalDep, conn: ConnDep
) -> dict[str, Any]:
    e = state.embedder
    mode = SearchMode(body.mode)
    vector = None
    if mode is not SearchMode.TEXT:
        [vector] = (await e.embed([body.query])).vectors
    hybrid = mode is SearchMode.HYBRID
    # hybrid: the text ranking runs beside the vector ranking on an idle pool connection,
    # when there is one (never waited for: store/db.py)
    async with spare_connection(state.pool) if hybrid else contextlib.nullcontext() as side:
        results = await search(
            conn,
            principal.user_id,
            query=body.query,
            query_vector=vector,
            model=e.model,
            version=e.version,
            k=body.k,
            mode=mode,
            strategy=state.vector_search,
            side=side,
        )
    await events.record(
        conn,
        actor=principal.actor,
        action="search",
        correlation_id=audit.correlation_id(request),
        detail={"k": body.k, "mode": mode.value, "results": len(results)},
    )
    return {"results": results}
