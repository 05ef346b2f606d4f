"""`cli/common.run_async`: the commands' coroutines run on uvloop where it is installed (a
required dependency off Windows), and fall back to asyncio's own loop without it."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest
import uvloop

from docingest.cli.common import run_async


async def _loop_and(value: int) -> tuple[asyncio.AbstractEventLoop, int]:
    await asyncio.sleep(0)
    return asyncio.get_running_loop(), value


def test_runs_on_uvloop_and_returns_the_result() -> None:
    loop, value = run_async(_loop_and(7))
    assert isinstance(loop, uvloop.Loop)
    assert value == 7
    assert loop.is_closed()


def test_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    loop, value = run_async(_loop_and(3))
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)
    assert value == 3
