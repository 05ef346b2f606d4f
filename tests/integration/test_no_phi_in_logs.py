"""Logs carry ids and codes only: never document text, filenames or tokens."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import pytest

from docingest.logs import JsonFormatter
from docingest.store.db import open_pool
from docingest.worker.runner import run_worker
from tests.conftest import CORPUS, EXAMPLES
from tests.helpers import make_runtime, upload


async def test_processing_logs_hold_no_text_or_filenames(
    dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_name = tmp_path / "Jane_Doe_SSN_123-45-6789.pdf"
    shutil.copy(EXAMPLES / "glossary_cms_uniform_health_coverage.pdf", secret_name)
    files = [secret_name]
    encrypted = CORPUS / "hostile" / "encrypted_aes256_r6_userpw.pdf"
    if encrypted.exists():  # a failing document logs too
        files.append(encrypted)
    rt = make_runtime(dsn, tmp_path / "home")
    caplog.set_level(logging.DEBUG)
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            for f in files:
                await upload(conn, rt, uuid.uuid4(), f)
        await run_worker(rt, once=True, handle_signals=False)
    finally:
        await pool.close()
    formatter = JsonFormatter()
    rendered = "\n".join(formatter.format(r) for r in caplog.records)
    assert rendered  # the worker did log
    for needle in (
        "Jane_Doe",
        "123-45-6789",
        "Coinsurance",
        "Deductible",
        "Uniform Glossary",
        rt.jwt_secret,
    ):
        assert needle.lower() not in rendered.lower(), needle
