"""Encrypted blob store in an S3-compatible bucket (DESIGN.md §1: production blobs):
AWS S3, Supabase Storage, MinIO, Cloudflare R2 (`DOCINGEST_STORAGE_URL=s3://bucket/prefix`,
`DOCINGEST_S3_ENDPOINT_URL` for anything but AWS).

Objects are byte-identical to the local backend's (`blob_format.py`): encrypted in this
process before they leave it, so the bucket and the network only ever see ciphertext, and
the plaintext sha256 is verified on every read. Object names are `prefix/key`; the
encryption binds `key` alone, so a bucket prefix can be moved.

Writes: an object smaller than one part is one PutObject; a larger one streams into a
multipart upload, `part_size` (>= 5 MiB, the S3 minimum) at a time, so memory holds one
part whatever the object's size. A failed or cancelled put aborts its multipart upload,
leaving nothing behind.

Immutability: before committing, a put looks for an existing object (HEAD) and, if there
is one, accepts it only when it holds the same plaintext (idempotent put), else
BlobExists. The commit itself carries `If-None-Match: *` (AWS S3 since 2024, R2, MinIO), so
two racing puts cannot overwrite each other: the loser gets 412 and compares instead. A
server that answers 501 NotImplemented to the header is remembered and gets plain puts:
there, check-then-put has a race window between HEAD and PUT in which a concurrent writer
of the same key can be overwritten; keys are content-addressed (sha256 in the name), so
both writers hold the same plaintext. Rewrap replaces an object under `If-Match: <etag>`
the same way.

boto3 is synchronous: every call runs in a worker thread (`asyncio.to_thread`); the client
is thread-safe. Network and service failures surface as TransientError
(`storage_unavailable`) so a job retries with backoff; messages carry keys and S3 error
codes only, never content, credentials or URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from docingest.clients.http_safety import require_tls_or_loopback
from docingest.domain.errors import ErrorCode, TransientError
from docingest.store.blob_format import (
    DEFAULT_FRAME_SIZE,
    HEADER_SIZE,
    KEY_RE,
    MAX_FRAME_SIZE,
    BlobInfo,
    BlobIntegrityError,
    BlobNotFound,
    FrameSealer,
    Keyring,
    KeySource,
    check_sha256,
    collect_verified,
    decrypt_object,
    digest_of,
    ensure_same_content,
    feed_frames,
    read_exact,
    read_key_id,
    rewrapped_header,
    split_frames,
    validate_key,
)
from docingest.store.keys import MasterKey

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        GetObjectOutputTypeDef,
        HeadObjectOutputTypeDef,
    )

__all__ = [
    "DEFAULT_PART_SIZE",
    "MIN_PART_SIZE",
    "S3BlobStore",
    "S3Location",
    "make_s3_client",
    "parse_s3_url",
]

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_COPY_CHUNK = 1 << 20
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
# 412; 409 while another conditional write of the key is in flight; 404 for If-Match on a
# deleted object.
_CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"}) | _MISSING
_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or a valid blob key (no leading or trailing '/')


def parse_s3_url(url: str) -> S3Location:
    """`s3://bucket` or `s3://bucket/prefix` -> S3Location; ValueError otherwise."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or parsed.query or parsed.fragment or parsed.params:
        raise ValueError("expected s3://bucket/prefix")
    if _BUCKET_RE.fullmatch(parsed.netloc) is None:
        raise ValueError("expected s3://bucket/prefix with a valid bucket name")
    prefix = parsed.path.strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except ValueError:
            raise ValueError(
                "the prefix must be '/'-separated segments of [A-Za-z0-9._-]"
            ) from None
    return S3Location(parsed.netloc, prefix)


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
) -> S3Client:
    """An S3 client for AWS (no endpoint) or an S3-compatible service at `endpoint_url`
    (https, or plain http to a loopback host only). Credentials not given come from
    boto3's default chain (environment, profile, instance role)."""
    if endpoint_url is not None:
        endpoint_url = require_tls_or_loopback(endpoint_url, "S3 endpoint")
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
    )
    config = Config(
        region_name=region or "us-east-1",
        signature_version="s3v4",
        # Supabase Storage and MinIO need path-style addressing; R2 accepts it.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10,
        read_timeout=60,
        # The GCM tags already authenticate every byte; botocore's default CRC checksums
        # (since 1.36) are refused by several S3-compatible servers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=16,
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


# --------------------------------------------------------------------------- errors


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))


@contextlib.contextmanager
def _storage_errors(operation: str) -> Iterator[None]:
    """S3 and network failures as TransientError carrying the S3 error code only."""
    try:
        yield
    except ClientError as exc:
        raise TransientError(
            ErrorCode.STORAGE_UNAVAILABLE, f"blob store {operation} failed ({_code(exc)})"
        ) from None
    except BotoCoreError as exc:
        raise TransientError(
            ErrorCode.STORAGE_UNAVAILABLE,
            f"blob store {operation} failed ({type(exc).__name__})",
        ) from None


class _Condition(TypedDict, total=False):
    IfNoneMatch: str
    IfMatch: str


class _ConditionFailed(Exception):
    """The commit's precondition did not hold (412, or 409 for a concurrent write)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# --------------------------------------------------------------------------- upload


class _ObjectUpload:
    """One object's ciphertext on its way into the bucket: a single PutObject when it fits
    in one part, else a multipart upload of `part_size`-byte parts (the last one smaller),
    so at most one part plus one batch of frames is ever held in memory.

    Every S3 call holds `_lock`, so `abort()` (which may run while a cancelled put's worker
    thread is still uploading a part) waits for that part, and nothing is uploaded after
    it: no orphaned multipart upload is left behind.
    """

    def __init__(self, client: S3Client, bucket: str, name: str, part_size: int) -> None:
        self._client = client
        self._bucket = bucket
        self._name = name
        self._part_size = part_size
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._closed = False
        self._lock = threading.Lock()

    def append(self, blocks: Iterable[bytes]) -> None:
        with self._lock:
            self._check_open()
            for block in blocks:
                self._buf += block
                while len(self._buf) >= self._part_size:
                    self._upload_part(self._part_size)

    def commit(self, condition: _Condition) -> None:
        """Make the object visible (raises _ConditionFailed when `condition` fails)."""
        with self._lock:
            self._check_open()
            try:
                if self._upload_id is None:
                    self._client.put_object(
                        Bucket=self._bucket, Key=self._name, Body=bytes(self._buf), **condition
                    )
                else:
                    if self._buf:
                        self._upload_part(len(self._buf))
                    self._client.complete_multipart_upload(
                        Bucket=self._bucket,
                        Key=self._name,
                        UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts},
                        **condition,
                    )
            except ClientError as exc:
                if condition and _code(exc) in _CONDITION_FAILED:
                    raise _ConditionFailed(_code(exc)) from None
                raise
            self._closed = True

    def abort(self) -> None:
        """Discard everything uploaded so far; a no-op after commit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._upload_id is not None:
                with contextlib.suppress(ClientError, BotoCoreError):
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=self._name, UploadId=self._upload_id
                    )

    def _upload_part(self, size: int) -> None:
        """Upload the first `size` buffered bytes as the next part."""
        if self._upload_id is None:
            created = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._name)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        answer = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._name,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buf[:size]),
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})
        del self._buf[:size]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("upload is closed")


# --------------------------------------------------------------------------- store


class S3BlobStore:
    """Encrypted objects in `bucket` under `prefix` (see the module docstring).

    `master_key` wraps new objects; `old_keys` are accepted for reading and re-wrapping;
    `key_source` (the key files) is followed through a rotation (`blob_format.Keyring`).
    """

    def __init__(
        self,
        client: S3Client,
        location: S3Location,
        master_key: MasterKey,
        *,
        old_keys: Sequence[MasterKey] = (),
        key_source: KeySource | None = None,
        frame_size: int = DEFAULT_FRAME_SIZE,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame_size must be between 1 and {MAX_FRAME_SIZE}")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE}")
        self.client = client
        self.location = location
        self.frame_size = frame_size
        self.part_size = part_size
        self._keyring = Keyring(master_key, old_keys, source=key_source)
        self._base = f"{location.prefix}/" if location.prefix else ""
        self._conditional = True  # until the server answers NotImplemented

    @property
    def master_key(self) -> MasterKey:
        """The key that wraps new objects (follows a rotation of the key files)."""
        return self._keyring.current

    def object_name(self, key: str) -> str:
        """The bucket object name that holds `key`."""
        return self._base + validate_key(key)

    # -- writing

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo:
        """Encrypt `chunks` to `key`, streaming; returns the plaintext's sha256 and size.

        Raises BlobTooLarge past `max_bytes` and BlobExists if the key holds different
        content (nothing is left in the bucket either way), ValueError for an invalid key.
        """
        name = self.object_name(key)
        sealer = FrameSealer(key, self.master_key, self.frame_size)
        upload = _ObjectUpload(self.client, self.location.bucket, name, self.part_size)

        def write(frames: list[memoryview], final: bool) -> None:
            with _storage_errors("put"):
                upload.append(sealer.seal(frames, final=final))

        upload.append([sealer.header])  # below one part: only buffers, no I/O on the loop
        try:
            await feed_frames(chunks, self.frame_size, max_bytes, write)
            return await asyncio.to_thread(self._publish, key, sealer.info(), upload)
        finally:
            await asyncio.to_thread(upload.abort)  # no-op after a successful commit

    async def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        return await asyncio.to_thread(self._put_bytes_sync, key, data)

    def _put_bytes_sync(self, key: str, data: bytes) -> BlobInfo:
        name = self.object_name(key)
        sealer = FrameSealer(key, self.master_key, self.frame_size)
        upload = _ObjectUpload(self.client, self.location.bucket, name, self.part_size)
        try:
            with _storage_errors("put"):
                upload.append([sealer.header])
                upload.append(sealer.seal(split_frames(data, self.frame_size), final=True))
            return self._publish(key, sealer.info(), upload)
        finally:
            upload.abort()

    def _publish(self, key: str, info: BlobInfo, upload: _ObjectUpload) -> BlobInfo:
        """Commit the upload unless the key already holds an object (then it must hold the
        same plaintext)."""
        with _storage_errors("put"):
            if self._head(self.object_name(key)) is not None:
                ensure_same_content(info, self._digest_sync(key))
                return info
            try:
                self._commit(upload, {"IfNoneMatch": "*"})
            except _ConditionFailed as exc:
                if exc.code == "ConditionalRequestConflict":  # the other put is in flight
                    raise TransientError(
                        ErrorCode.STORAGE_UNAVAILABLE, f"blob {key} is being written concurrently"
                    ) from None
                ensure_same_content(info, self._digest_sync(key))
        return info

    def _commit(self, upload: _ObjectUpload, condition: _Condition) -> None:
        if not self._conditional:
            upload.commit({})
            return
        try:
            upload.commit(condition)
        except ClientError as exc:
            if _code(exc) != "NotImplemented":
                raise
            self._conditional = False
            log.warning(
                "blob store does not support conditional writes; using check-then-put",
                extra={"action": "blob_conditional_unsupported"},
            )
            upload.commit({})

    # -- reading

    async def get_bytes(self, key: str, *, expected_sha256: str) -> bytes:
        """Decrypt and verify every frame and the plaintext sha256.

        Raises BlobNotFound, BlobIntegrityError (BlobKeyUnavailable when the wrapping
        master key is not known to this store), ValueError for an invalid key or sha256,
        TransientError when the store cannot be reached.
        """
        expected = check_sha256(expected_sha256)
        self.object_name(key)
        return await asyncio.to_thread(
            lambda: collect_verified(key, self._iter_plaintext(key), expected)
        )

    def _digest_sync(self, key: str) -> tuple[str, int]:
        return digest_of(self._iter_plaintext(key))

    def _iter_plaintext(self, key: str) -> Iterator[bytes]:
        with _storage_errors("get"):
            answer = self._get(key)
            body = answer["Body"]
            try:
                yield from decrypt_object(key, body.read, answer["ContentLength"], self._keyring)
            finally:
                body.close()

    def _get(self, key: str, **extra: Any) -> GetObjectOutputTypeDef:
        try:
            return self.client.get_object(
                Bucket=self.location.bucket, Key=self.object_name(key), **extra
            )
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise BlobNotFound(key) from None
            if _code(exc) == "InvalidRange":  # an empty object has no header to range over
                raise BlobIntegrityError(key, "truncated") from None
            raise

    def _head(self, name: str) -> HeadObjectOutputTypeDef | None:
        try:
            return self.client.head_object(Bucket=self.location.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    # -- management

    async def delete(self, key: str) -> bool:
        """Remove the object; True if it existed (HEAD then DELETE: S3 deletes are
        idempotent and do not say whether there was anything to delete)."""
        name = self.object_name(key)

        def run() -> bool:
            with _storage_errors("delete"):
                if self._head(name) is None:
                    return False
                self.client.delete_object(Bucket=self.location.bucket, Key=name)
                return True

        return await asyncio.to_thread(run)

    async def exists(self, key: str) -> bool:
        name = self.object_name(key)

        def run() -> bool:
            with _storage_errors("exists"):
                return self._head(name) is not None

        return await asyncio.to_thread(run)

    def key_id_of(self, key: str) -> str:
        """The master key id recorded in the object's header (not authenticated here;
        `rewrap` and reads authenticate it)."""
        with _storage_errors("get"):
            answer = self._get(key, Range=f"bytes=0-{HEADER_SIZE - 1}")
            body = answer["Body"]
            try:
                return read_key_id(key, read_exact(body.read, HEADER_SIZE))
            finally:
                body.close()

    def rewrap(self, key: str, new_master: MasterKey) -> None:
        """Re-wrap the object's data key with `new_master`; the frames are copied verbatim,
        streamed part by part. The replacement is committed only if the object still has
        the ETag it had when read (`If-Match`), so a concurrent delete or change is never
        undone. Afterwards this store also knows `new_master`; a no-op when the object is
        already wrapped with it."""
        name = self.object_name(key)
        with _storage_errors("rewrap"):
            answer = self._get(key)
            body = answer["Body"]
            upload = _ObjectUpload(self.client, self.location.bucket, name, self.part_size)
            try:
                old_header = read_exact(body.read, HEADER_SIZE)
                new_header = rewrapped_header(key, old_header, self._keyring, new_master)
                if new_header is None:
                    return
                upload.append([new_header])
                read = functools.partial(body.read, _COPY_CHUNK)
                for block in iter(read, b""):
                    upload.append([block])
                self._replace(key, upload, answer["ETag"])
            finally:
                upload.abort()
                body.close()

    def _replace(self, key: str, upload: _ObjectUpload, etag: str) -> None:
        current = self._head(self.object_name(key))
        if current is None:
            raise BlobNotFound(key)  # deleted meanwhile: do not resurrect it
        if current.get("ETag") != etag:
            raise BlobIntegrityError(key, "header", f"blob {key} changed during rewrap")
        try:
            self._commit(upload, {"IfMatch": etag})
        except _ConditionFailed:
            raise BlobIntegrityError(key, "header", f"blob {key} changed during rewrap") from None

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored object key starting with `prefix` (for rotation, backup, audits),
        in the bucket's (lexicographic) order."""
        for key, _ in self.iter_objects(prefix):
            yield key

    def iter_objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self._base + prefix
        )
        with _storage_errors("list"):
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self._base) :]
                    if KEY_RE.fullmatch(key):
                        yield key, obj["LastModified"].timestamp()
