"""The local parser's fork server: ``python -m docingest.clients.parse_server --control-fd N``.

Starting a Python interpreter and importing PDFium costs more CPU (~150 ms) than converting a
typical 50-page document. The worker starts this process once, with the same clean
environment its parse children always had (no secrets), and it forks one child per document
from an interpreter that has already imported the converter. The sandbox is unchanged: each
child is one document in one process that closes every inherited descriptor, lowers its own
limits (``parse_child.run``) and dies with this server, so a PDFium crash, a runaway page or a
memory blow-up ends only that child. This process never reads a document.

Protocol, over one AF_UNIX datagram socket shared with ``local_parser`` (the only client):

- ``{"op": "parse", <limits>}`` with three descriptors attached: the child's input (it reads
  the PDF until EOF), its answer channel (one JSON object, see ``parse_child``) and a status
  channel. The server forks and writes ``started <pid>`` then, when it reaps the child,
  ``exited <code>`` (``os.waitstatus_to_exitcode``: negative for a signal) to the status
  channel and closes it; ``failed`` if it could not fork.
- ``{"op": "kill", "pid": N}``: SIGKILL child N if it is still running (never a pid it has
  already reaped, so never a recycled one).

The server exits, killing its children, when its stdin reaches EOF: the worker is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from docingest.clients import parse_child

_PR_SET_PDEATHSIG = 1
_MAX_REQUEST_BYTES = 4096
_FDS_PER_PARSE = 3
_LIMIT_KEYS = ("max_pages", "memory_mb", "cpu_seconds", "max_page_chars", "max_document_chars")
# the status a child reports when it died in our own code, not in the document's
_CHILD_FAILED = 70


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docingest.clients.parse_server")
    parser.add_argument("--control-fd", type=int, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the whole process group; this server lives exactly as
    # long as its worker (stdin EOF), whatever the signal did to the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # imported once here, so that no child pays for it
    from docingest.clients import pdf_markdown  # noqa: F401

    control = socket.socket(fileno=args.control_fd)
    _Server(control).run()
    return 0


class _Server:
    def __init__(self, control: socket.socket) -> None:
        self._pid = os.getpid()
        self._control = control
        self._control.setblocking(False)
        self._live: dict[int, int] = {}  # child pid -> its status descriptor
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        # a Python-level handler is needed for the wakeup descriptor to see SIGCHLD
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._control, selectors.EVENT_READ, self._on_request)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._reap)
        self._selector.register(0, selectors.EVENT_READ, None)

    def run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:  # stdin
                    if not os.read(0, 4096):
                        self._shutdown()
                        return
                else:
                    key.data()

    def _on_request(self) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self._control, _MAX_REQUEST_BYTES, _FDS_PER_PARSE)
        except BlockingIOError:
            return
        try:
            request = json.loads(message)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            _close_all(fds)
        elif request.get("op") == "parse" and len(fds) == _FDS_PER_PARSE:
            self._fork(request, *fds)
        else:
            _close_all(fds)
            pid = request.get("pid")
            if request.get("op") == "kill" and isinstance(pid, int) and pid in self._live:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _fork(self, request: dict[str, Any], input_fd: int, answer_fd: int, status_fd: int) -> None:
        limits = {key: request.get(key) for key in _LIMIT_KEYS}
        try:
            pid = os.fork()
        except OSError:
            _say(status_fd, "failed")
            _close_all([input_fd, answer_fd, status_fd])
            return
        if pid == 0:
            _child(input_fd, answer_fd, limits, server_pid=self._pid)
        _close_all([input_fd, answer_fd])
        self._live[pid] = status_fd
        _say(status_fd, f"started {pid}")

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        while self._live:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status_fd = self._live.pop(pid, None)
            if status_fd is not None:
                _say(status_fd, f"exited {os.waitstatus_to_exitcode(status)}")
                os.close(status_fd)

    def _shutdown(self) -> None:
        for pid, status_fd in self._live.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.close(status_fd)


def _child(input_fd: int, answer_fd: int, limits: dict[str, Any], *, server_pid: int) -> NoReturn:
    """In the forked child: stdin/stdout become the request's channels, stderr /dev/null,
    and nothing else of the server stays open; then one document, then exit."""
    code = _CHILD_FAILED
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_server()
        if os.getppid() != server_pid:  # the server died before the line above took effect
            os._exit(code)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(input_fd, 0)
        os.dup2(answer_fd, 1)
        os.dup2(devnull, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        parse_child.run(**limits)
        code = 0
    finally:
        os._exit(code)


def _die_with_server() -> None:
    """Linux: SIGKILL this child when the server exits (a dead worker leaves no parses)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _say(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):  # the client may have given up on this parse
        os.write(fd, f"{line}\n".encode())


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
