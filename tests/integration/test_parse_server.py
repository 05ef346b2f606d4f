"""The local parser's fork server: one per process, reused, restarted when it dies, never
outliving its worker, and handing each document to a child that holds nothing of it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from docingest.clients import local_parser, parse_server_link
from docingest.clients.local_parser import LocalParser, parse_pdf
from docingest.domain.errors import ErrorCode, TransientError
from docingest.testing.pdfgen import make_pdf
from tests.helpers import child_processes

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

DIRECTORY = (
    Path(__file__).resolve().parents[2].parent
    / "shared/corpus/real/provider_directory_star_health_hospital_network_500p.pdf"
)
DEADLINE_S = 20.0


def _children(parent: int) -> list[int]:
    return [pid for pid, _ in child_processes(parent)]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _server() -> parse_server_link.ParseServer:
    return parse_server_link.shared_server(local_parser._child_env())


async def _until(condition: Callable[[], bool]) -> None:
    """Poll an observable condition (a process appearing or ending), bounded."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_one_server_serves_every_parse() -> None:
    data = make_pdf(7, pages=3)
    first = await parse_pdf(data)
    server_pid = _server().pid
    second = await parse_pdf(data)
    assert first == second and first.pages == 3
    assert _server().pid == server_pid
    assert server_pid in _children(os.getpid())
    assert _children(server_pid) == []  # every child reaped


async def test_start_brings_the_server_up_before_any_parse() -> None:
    _server().stop()
    assert _server().pid is None
    LocalParser().start()
    server_pid = _server().pid
    assert server_pid is not None and server_pid in _children(os.getpid())
    assert (await parse_pdf(make_pdf(12, pages=2))).pages == 2
    assert _server().pid == server_pid


async def test_a_dead_server_is_replaced() -> None:
    await parse_pdf(make_pdf(8, pages=1))
    old = _server().pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    await _until(lambda: _gone(old))
    parsed = await parse_pdf(make_pdf(8, pages=1))
    assert parsed.pages == 1
    assert _server().pid not in (None, old)


async def test_server_death_mid_parse_is_transient_and_kills_the_child() -> None:
    data = DIRECTORY.read_bytes()
    await parse_pdf(make_pdf(9, pages=1))  # the server is up
    server_pid = _server().pid
    assert server_pid is not None
    parse = asyncio.create_task(parse_pdf(data, timeout_s=60.0))
    await _until(lambda: bool(_children(server_pid)))
    (child,) = _children(server_pid)
    os.kill(server_pid, signal.SIGKILL)
    with pytest.raises(TransientError) as info:
        await parse
    assert info.value.code is ErrorCode.PARSER_UNAVAILABLE
    await _until(lambda: _gone(child))


async def test_server_and_children_hold_no_secrets_and_no_descriptors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCINGEST_DATABASE_URL", "postgresql://u:s3cret-marker@db/x")
    # a new shared server, built from this environment (the first one was built before the
    # secret was set); the old one is back after the test
    monkeypatch.setattr(parse_server_link, "_server", None)
    parse = asyncio.create_task(parse_pdf(DIRECTORY.read_bytes(), timeout_s=60.0))
    await _until(lambda: _server().pid is not None and bool(_children(_server().pid or 0)))
    server_pid = _server().pid
    (child,) = _children(server_pid or 0)
    for pid in (server_pid, child):
        assert b"s3cret-marker" not in Path(f"/proc/{pid}/environ").read_bytes()
    # stdin (the document), stdout and stderr (/dev/null), 3: the answer channel kept aside
    # while stdout points at stderr; nothing of the server (its control socket, other
    # children's status channels)
    fds = {int(fd): os.readlink(f"/proc/{child}/fd/{fd}") for fd in os.listdir(f"/proc/{child}/fd")}
    assert sorted(fds) == [0, 1, 2, 3]
    assert fds[1] == fds[2] == os.devnull and fds[0].startswith("socket:")
    assert (await parse).pages == 500


async def test_timeout_kills_the_child_not_the_server() -> None:
    await parse_pdf(make_pdf(10, pages=1))
    server_pid = _server().pid
    with pytest.raises(Exception) as info:
        await parse_pdf(DIRECTORY.read_bytes(), timeout_s=0.3)
    assert getattr(info.value, "code", None) is ErrorCode.PARSE_LIMIT
    assert _server().pid == server_pid
    assert server_pid is not None and _children(server_pid) == []


def test_the_server_exits_with_its_worker() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from docingest.clients import local_parser, parse_server_link
        from docingest.testing.pdfgen import make_pdf
        asyncio.run(local_parser.parse_pdf(make_pdf(11, pages=1)))
        print(parse_server_link.shared_server(local_parser._child_env()).pid, flush=True)
        input()  # until the test kills this "worker"
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as worker:
        assert worker.stdout is not None
        server_pid = int(worker.stdout.readline())
        assert not _gone(server_pid)
        worker.kill()
    asyncio.run(_until(lambda: _gone(server_pid)))
