"""The S3-compatible blob store against a real S3-protocol server: moto's server mode,
started as a process on 127.0.0.1, with a fresh bucket per test.

The whole backend-agnostic contract (`tests/blob_contract.py`) runs here too; the tests
below it cover what only S3 has: multipart uploads and their clean-up, bucket prefixes,
service outages, and the pipeline end to end with `DOCINGEST_STORAGE_URL=s3://…`.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config

from docingest.domain.errors import ErrorCode, TransientError
from docingest.domain.states import JobStatus
from docingest.store import documents, jobs
from docingest.store.blobs import HEADER_SIZE, TAG_SIZE, BlobExists, BlobTooLarge
from docingest.store.blobs_s3 import (
    MIN_PART_SIZE,
    S3BlobStore,
    S3Location,
    make_s3_client,
)
from docingest.store.db import open_pool
from docingest.store.keys import MasterKey
from docingest.testing.procs import free_port, run_process
from docingest.worker.runner import run_worker
from tests.blob_contract import FS, BlobStoreContract, content, sha
from tests.conftest import EXAMPLES
from tests.helpers import make_runtime, upload

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

ACCESS = {"AWS_ACCESS_KEY_ID": "moto-test-key", "AWS_SECRET_ACCESS_KEY": "moto-test-secret"}
PREFIX = "tenant-a/blobs"
MiB = 1 << 20


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-protocol server, one process for the session."""
    port = free_port()
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    with run_process(args, ready_url=f"{url}/moto-api/", timeout_s=60):
        yield url


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> S3Client:
    """One client for the session (thread-safe; building one loads botocore's models)."""
    return make_s3_client(
        endpoint_url=s3_endpoint,
        access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
        secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def bucket(s3_client: S3Client) -> str:
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name


class S3Harness:
    """A fresh bucket; objects under PREFIX are the raw objects."""

    def __init__(self, client: S3Client, bucket: str, mk: MasterKey, prefix: str = PREFIX) -> None:
        self.client = client
        self.bucket = bucket
        self.location = S3Location(bucket, prefix)
        self.store = self.make(mk)

    def make(
        self,
        master: MasterKey,
        *,
        old_keys: Sequence[MasterKey] = (),
        frame_size: int = FS,
        part_size: int = MIN_PART_SIZE,
    ) -> S3BlobStore:
        return S3BlobStore(
            self.client,
            self.location,
            master,
            old_keys=old_keys,
            frame_size=frame_size,
            part_size=part_size,
        )

    def raw_get(self, key: str) -> bytes:
        answer = self.client.get_object(Bucket=self.bucket, Key=self.store.object_name(key))
        data: bytes = answer["Body"].read()
        return data

    def raw_put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.store.object_name(key), Body=data)

    def raw_names(self) -> list[str]:
        """Keys under the prefix, objects elsewhere in the bucket by full name, and any
        unfinished multipart upload as "upload:<name>"."""
        base = PREFIX + "/"
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                name = obj["Key"]
                names.append(name.removeprefix(base) if name.startswith(base) else name)
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        names += [f"upload:{u['Key']}" for u in uploads]
        return sorted(names)


@pytest.fixture
def s3(s3_client: S3Client, bucket: str) -> S3Harness:
    return S3Harness(s3_client, bucket, MasterKey.generate())


class TestS3BlobStore(BlobStoreContract):
    # Every request goes over HTTP to moto (~10 ms): flip every header byte and every
    # 7th byte of the frames (still every frame body and tag) to keep this test short.
    FLIP_STRIDE = 7

    @pytest.fixture
    def harness(self, s3: S3Harness) -> S3Harness:
        return s3


# --------------------------------------------------------------------------- multipart


async def chunks_of(data: bytes, step: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]


def part_count(h: S3Harness, key: str) -> int:
    """Parts of a multipart object (its ETag ends in -N), 1 for a single PutObject."""
    etag = h.client.head_object(Bucket=h.bucket, Key=h.store.object_name(key))["ETag"]
    return int(etag.strip('"').rpartition("-")[2]) if "-" in etag else 1


async def test_large_objects_stream_in_parts_and_round_trip(s3: S3Harness) -> None:
    store = s3.make(MasterKey.generate(), frame_size=MiB)
    data = content(12 * MiB + 5)  # 13 frames -> ciphertext just over 12 MiB -> 3 parts
    info = await store.put_stream("raw/big", chunks_of(data))
    assert (info.sha256, info.size) == (sha(data), len(data))
    assert part_count(s3, "raw/big") == 3
    assert len(s3.raw_get("raw/big")) == HEADER_SIZE + len(data) + 13 * TAG_SIZE
    assert await store.get_bytes("raw/big", expected_sha256=sha(data)) == data

    assert (await store.put_bytes("parsed/big", data)).sha256 == sha(data)
    assert part_count(s3, "parsed/big") == 3
    assert await store.get_bytes("parsed/big", expected_sha256=sha(data)) == data

    # idempotent re-put of a multipart object; a different one is refused; no upload left
    assert await store.put_stream("raw/big", chunks_of(data)) == info
    with pytest.raises(BlobExists):
        await store.put_stream("raw/big", chunks_of(data[:-1]))
    assert s3.raw_names() == ["parsed/big", "raw/big"]


async def test_failed_or_cancelled_multipart_uploads_are_aborted(s3: S3Harness) -> None:
    store = s3.make(MasterKey.generate(), frame_size=MiB)
    data = content(11 * MiB)

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(data):
            yield chunk
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await store.put_stream("f/broken", broken())
    assert s3.raw_names() == []

    with pytest.raises(BlobTooLarge):
        await store.put_stream("f/large", chunks_of(data), max_bytes=len(data) - 1)
    assert s3.raw_names() == []

    parts_started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(data):
            yield chunk
        parts_started.set()
        await asyncio.sleep(3600)
        yield b""

    task = asyncio.create_task(store.put_stream("f/stalled", stalled()))
    await parts_started.wait()
    assert [n for n in s3.raw_names() if n.startswith("upload:")]  # a part is in the bucket
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s3.raw_names() == []


async def test_rewrap_of_a_multipart_object(s3: S3Harness) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    store = s3.make(old, frame_size=MiB)
    data = content(11 * MiB)
    await store.put_bytes("r/big", data)
    frames = s3.raw_get("r/big")[HEADER_SIZE:]
    rotating = s3.make(new, old_keys=[old], frame_size=MiB)
    rotating.rewrap("r/big", new)
    assert rotating.key_id_of("r/big") == new.key_id
    assert s3.raw_get("r/big")[HEADER_SIZE:] == frames
    assert await s3.make(new).get_bytes("r/big", expected_sha256=sha(data)) == data
    assert s3.raw_names() == ["r/big"]


# --------------------------------------------------------------------------- prefixes, outages


async def test_prefixes_keep_stores_apart(s3_client: S3Client, bucket: str) -> None:
    mk = MasterKey.generate()
    a = S3BlobStore(s3_client, S3Location(bucket, "a"), mk, frame_size=FS)
    b = S3BlobStore(s3_client, S3Location(bucket, "a-b"), mk, frame_size=FS)
    whole = S3BlobStore(s3_client, S3Location(bucket, ""), mk, frame_size=FS)
    await a.put_bytes("k/x", b"from a")
    await b.put_bytes("k/x", b"from b")
    assert list(a.iter_keys()) == ["k/x"] and list(b.iter_keys()) == ["k/x"]
    assert await a.get_bytes("k/x", expected_sha256=sha(b"from a")) == b"from a"
    assert await b.get_bytes("k/x", expected_sha256=sha(b"from b")) == b"from b"
    assert sorted(whole.iter_keys()) == ["a-b/k/x", "a/k/x"]
    assert await a.delete("k/x") and await b.exists("k/x")


async def test_unreachable_store_is_a_transient_storage_error() -> None:
    port = free_port()  # nothing listens there
    session = boto3.session.Session(
        aws_access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
    )
    client = session.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2),
    )
    store = S3BlobStore(client, S3Location("b", "p"), MasterKey.generate())
    for call in (
        store.get_bytes("k/x", expected_sha256=sha(b"")),
        store.put_bytes("k/x", b"data"),
        store.exists("k/x"),
        store.delete("k/x"),
    ):
        with pytest.raises(TransientError) as ei:
            await call
        assert ei.value.code is ErrorCode.STORAGE_UNAVAILABLE
        assert str(port) not in str(ei.value) and "127.0.0.1" not in str(ei.value)


# --------------------------------------------------------------------------- pipeline


async def test_pipeline_runs_on_the_s3_store(
    dsn: str, tmp_path: Path, s3_endpoint: str, s3: S3Harness
) -> None:
    rt = make_runtime(
        dsn,
        tmp_path,
        DOCINGEST_STORAGE_URL=f"s3://{s3.bucket}/{PREFIX}",
        DOCINGEST_S3_ENDPOINT_URL=s3_endpoint,
        AWS_REGION="eu-west-1",
        **ACCESS,
    )
    assert isinstance(rt.blobs, S3BlobStore)
    user = uuid.uuid4()
    pdf = EXAMPLES / "sbc_aetna_silver_2025.pdf"
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            res = await upload(conn, rt, user, pdf)
        assert await run_worker(rt, concurrency=1, once=True, handle_signals=False) == 1
        async with pool.connection() as conn:
            job = await jobs.get(conn, res.job_id)
            assert job is not None and job.status == JobStatus.COMPLETE, job
            assert job.progress["embeds_done"] == job.progress["chunks_total"] > 0
            assert job.parsed_path is not None
            names = s3.raw_names()
            assert names == sorted([job.raw_path, job.parsed_path])
            raw = s3.raw_get(job.raw_path)
            assert not raw.startswith(b"%PDF") and pdf.read_bytes()[:4096] not in raw
            await documents.delete(conn, rt.blobs, res.document_id, user, actor="test")
        assert s3.raw_names() == []
    finally:
        await pool.close()
