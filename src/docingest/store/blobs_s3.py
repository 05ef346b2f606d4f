"""The S3-compatible raw backend and the encrypted store over it (DESIGN.md §1: production
blobs): AWS S3, Supabase Storage, MinIO, Cloudflare R2
(`DOCINGEST_STORAGE_URL=s3://bucket/prefix`, `DOCINGEST_S3_ENDPOINT_URL` for anything but
AWS).

`S3BlobStore` is `encrypted_blobs.EncryptedBlobStore` over `S3Backend`: objects are
byte-identical to the local folder's (`blob_format.py`), encrypted in this process before
they leave it, so the bucket and the network only ever see ciphertext. Object names are
`prefix/key`; the encryption binds `key` alone, so a bucket prefix can be moved.

Writes: an object smaller than one part is one PutObject; a larger one streams into a
multipart upload, `part_size` (>= 5 MiB, the S3 minimum) at a time, so memory holds one
part whatever the object's size. A failed or cancelled put aborts its multipart upload,
leaving nothing behind.

Immutability: before committing, a put looks for an existing object (HEAD) and, if there
is one, leaves it alone (the encrypting store then compares plaintexts). The commit itself carries `If-None-Match: *` (AWS S3 since 2024, R2, MinIO), so
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

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from docingest.domain.errors import ErrorCode, TransientError
from docingest.security.outbound import require_tls_or_loopback
from docingest.store.blob_format import (
    DEFAULT_FRAME_SIZE,
    KEY_RE,
    BlobIntegrityError,
    BlobNotFound,
    KeySource,
    validate_key,
)
from docingest.store.encrypted_blobs import EncryptedBlobStore
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
    "S3Backend",
    "S3BlobStore",
    "S3Location",
    "make_s3_client",
    "parse_s3_url",
]

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_PART_SIZE = 8 * 1024 * 1024
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

    def append(self, blocks: Iterable[bytes | memoryview]) -> None:
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


# --------------------------------------------------------------------------- backend


class S3Object:
    """An object's GetObject stream; failures mid-stream are storage errors."""

    def __init__(self, answer: GetObjectOutputTypeDef) -> None:
        self._body = answer["Body"]
        self.size = answer["ContentLength"]
        self.version = answer["ETag"]

    def read(self, n: int) -> bytes:
        with _storage_errors("get"):
            return self._body.read(n)

    def close(self) -> None:
        self._body.close()


class S3Writer:
    """One object's bytes on their way into the bucket (see `_ObjectUpload`)."""

    def __init__(self, backend: S3Backend, key: str) -> None:
        self._backend = backend
        self._key = key
        self._name = backend.object_name(key)
        self._upload = _ObjectUpload(backend.client, backend.bucket, self._name, backend.part_size)

    def write(self, blocks: Iterable[bytes | memoryview]) -> None:
        with _storage_errors("put"):
            self._upload.append(blocks)

    def publish(self) -> bool:
        with _storage_errors("put"):
            if self._backend.head(self._name) is not None:
                return False
            try:
                self._backend.commit(self._upload, {"IfNoneMatch": "*"})
            except _ConditionFailed as exc:
                if exc.code == "ConditionalRequestConflict":  # the other put is in flight
                    raise TransientError(
                        ErrorCode.STORAGE_UNAVAILABLE,
                        f"blob {self._key} is being written concurrently",
                    ) from None
                return False
            return True

    def replace(self, version: str) -> None:
        changed = BlobIntegrityError(self._key, "header", f"blob {self._key} changed during rewrap")
        with _storage_errors("rewrap"):
            current = self._backend.head(self._name)
            if current is None:
                raise BlobNotFound(self._key)  # deleted meanwhile: do not resurrect it
            if current.get("ETag") != version:
                raise changed
            try:
                self._backend.commit(self._upload, {"IfMatch": version})
            except _ConditionFailed:
                raise changed from None

    def abort(self) -> None:
        self._upload.abort()


class S3Backend:
    """Objects in `location.bucket` named `location.prefix/key`."""

    def __init__(self, client: S3Client, location: S3Location, part_size: int) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE}")
        self.client = client
        self.bucket = location.bucket
        self.part_size = part_size
        self._base = f"{location.prefix}/" if location.prefix else ""
        self._conditional = True  # until the server answers NotImplemented

    def object_name(self, key: str) -> str:
        """The bucket object name that holds `key`."""
        return self._base + validate_key(key)

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self, key)

    def open(self, key: str, *, first: int | None = None) -> S3Object:
        name = self.object_name(key)
        with _storage_errors("get"):
            try:
                if first is None:
                    answer = self.client.get_object(Bucket=self.bucket, Key=name)
                else:
                    answer = self.client.get_object(
                        Bucket=self.bucket, Key=name, Range=f"bytes=0-{first - 1}"
                    )
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise BlobNotFound(key) from None
                if _code(exc) == "InvalidRange":  # an empty object has no header to range over
                    raise BlobIntegrityError(key, "truncated") from None
                raise
        return S3Object(answer)

    def delete(self, key: str) -> bool:
        """HEAD then DELETE: S3 deletes are idempotent and do not say whether there was
        anything to delete."""
        name = self.object_name(key)
        with _storage_errors("delete"):
            if self.head(name) is None:
                return False
            self.client.delete_object(Bucket=self.bucket, Key=name)
            return True

    def exists(self, key: str) -> bool:
        with _storage_errors("exists"):
            return self.head(self.object_name(key)) is not None

    def iter_objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """In the bucket's (lexicographic) order."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._base + prefix
        )
        with _storage_errors("list"):
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self._base) :]
                    if KEY_RE.fullmatch(key):
                        yield key, obj["LastModified"].timestamp()

    def head(self, name: str) -> HeadObjectOutputTypeDef | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    def commit(self, upload: _ObjectUpload, condition: _Condition) -> None:
        """Commit with `condition`, or without one on a server that does not support
        conditional writes (remembered after its first NotImplemented)."""
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


# --------------------------------------------------------------------------- store


class S3BlobStore(EncryptedBlobStore):
    """Encrypted objects in `location.bucket` under `location.prefix`."""

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
        self.client = client
        self.location = location
        self.s3 = S3Backend(client, location, part_size)
        super().__init__(
            self.s3, master_key, old_keys=old_keys, key_source=key_source, frame_size=frame_size
        )

    def object_name(self, key: str) -> str:
        """The bucket object name that holds `key`."""
        return self.s3.object_name(key)
