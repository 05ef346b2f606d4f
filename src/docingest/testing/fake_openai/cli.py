"""`python -m docingest.testing.fake_openai`: the fake as a process, configured by flags."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence

import uvicorn

from docingest.pipeline.tokens import count_tokens
from docingest.testing.fake_openai.app import create_app
from docingest.testing.fake_openai.config import FakeOpenAIConfig, FaultConfig, validate_control


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m docingest.testing.fake_openai",
        description="Fake OpenAI embeddings server (deterministic vectors, fault injection).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_OPENAI_API_KEY") or None,
        help="require 'Authorization: Bearer KEY' (env FAKE_OPENAI_API_KEY); default: no auth",
    )
    p.add_argument("--rpm", type=int, default=FakeOpenAIConfig.rpm, help="requests per minute")
    p.add_argument("--tpm", type=int, default=FakeOpenAIConfig.tpm, help="tokens per minute")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument(
        "--latency-jitter-ms", type=float, default=0.0, help="plus uniform [0, this] per request"
    )
    p.add_argument("--fail-429-next", type=int, default=0)
    p.add_argument("--fail-500-next", type=int, default=0)
    p.add_argument("--quota-exhausted", action="store_true")
    p.add_argument("--poison-substring", default=None)
    p.add_argument("--hang-next", type=int, default=0)
    p.add_argument("--hang-seconds", type=float, default=FaultConfig.hang_seconds)
    p.add_argument("--retry-after-ms", type=int, default=FaultConfig.retry_after_ms)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[str, int, FakeOpenAIConfig]:
    parser = _parser()
    args = parser.parse_args(argv)
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        fail_429_next=args.fail_429_next,
        fail_500_next=args.fail_500_next,
        quota_exhausted=args.quota_exhausted,
        poison_substring=args.poison_substring,
        hang_next=args.hang_next,
        hang_seconds=args.hang_seconds,
        retry_after_ms=args.retry_after_ms,
    )
    try:
        validate_control({**dataclasses.asdict(faults), "rpm": args.rpm, "tpm": args.tpm})
    except ValueError as exc:
        parser.error(str(exc))
    config = FakeOpenAIConfig(api_key=args.api_key, rpm=args.rpm, tpm=args.tpm, faults=faults)
    return str(args.host), int(args.port), config


def main(argv: Sequence[str] | None = None) -> None:
    host, port, config = config_from_args(argv)
    count_tokens("warm up")  # load the tokenizer now, not on the first request
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
