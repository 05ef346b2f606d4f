"""`python -m docingest.testing.fake_llamaparse`: the fake as a process."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Sequence

import uvicorn

from docingest.testing.fake_llamaparse.app import create_app
from docingest.testing.fake_llamaparse.faults import MODES, Faults
from docingest.testing.fake_llamaparse.state import FakeState
from docingest.testing.fake_parse_pool import ParsePool


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m docingest.testing.fake_llamaparse",
        description="Fake LlamaParse v1 server (real local parsing, callbacks, fault injection).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--mode", choices=MODES, default="callback")
    p.add_argument(
        "--webhook-secret",
        default=os.environ.get("DOCINGEST_WEBHOOK_SECRET") or None,
        help="derives the per-job signing keys in relay mode (env DOCINGEST_WEBHOOK_SECRET)",
    )
    p.add_argument(
        "--parse-concurrency",
        type=int,
        default=2,
        help="documents parsed at once; the rest wait PENDING in arrival order",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_LLAMAPARSE_API_KEY") or None,
        help="require 'Authorization: Bearer KEY' (env FAKE_LLAMAPARSE_API_KEY)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    state = FakeState(
        args.api_key,
        args.webhook_secret,
        Faults(mode=args.mode),
        parser=ParsePool(max(1, args.parse_concurrency)),
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(
                create_app(state),
                host=args.host,
                port=args.port,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=2,
            )
    finally:
        state.parser.close()
