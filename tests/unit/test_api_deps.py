"""The API's dependencies run on the event loop: FastAPI hands every plain `def` dependency to
its thread pool, a thread hop per dependency on every request (api/deps.py)."""

from __future__ import annotations

import inspect
import typing

from fastapi.params import Depends

from docingest.api import deps


def _dependencies() -> dict[str, object]:
    found = {}
    for name, alias in vars(deps).items():
        if typing.get_origin(alias) is typing.Annotated:
            for marker in typing.get_args(alias)[1:]:
                if isinstance(marker, Depends) and marker.dependency is not None:
                    found[name] = marker.dependency
        elif name.startswith("get_") and inspect.isfunction(alias):  # nested ones too
            found[name] = alias
    return found


def test_every_dependency_is_async() -> None:
    found = _dependencies()
    assert {"StateDep", "PrincipalDep", "AdminDep", "ConnDep", "ReaderDep"} <= set(found)
    assert "get_any_principal" in found
    sync = [
        name
        for name, fn in found.items()
        if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))
    ]
    assert sync == []
