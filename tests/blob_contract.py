"""The blob-store contract (DESIGN.md §8, CONTRACTS.md §4), run against every backend.

`BlobStoreContract` holds backend-agnostic tests; a test module subclasses it as `Test…`
and provides a `harness` fixture: a fresh, empty store location per test plus raw access
to the stored bytes (to tamper with them as an attacker with storage access would).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docingest.domain.errors import DocingestError, ErrorCode
from docingest.store.blobs import (
    HEADER_SIZE,
    TAG_SIZE,
    BlobExists,
    BlobInfo,
    BlobIntegrityError,
    BlobKeyUnavailable,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
)
from docingest.store.keys import MasterKey

MARKER = b"PHI-MARKER Jane Q. Patient DOB 1970-01-01 member 123-45-6789"
USER = "6f1c1c3e-8f7e-4f2b-9a3e-2b7c9d1e0f11"
FS = 64  # small frame size so a few hundred bytes make many frames


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def okey(data: bytes) -> str:
    return f"raw/{USER}/{sha(data)}.pdf.enc"


async def agen(data: bytes, step: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]
        await asyncio.sleep(0)


def content(n: int) -> bytes:
    """n bytes with the marker repeated inside, so any plaintext leak is findable."""
    unit = MARKER + b"|"
    return (unit * (n // len(unit) + 1))[:n]


class BlobHarness(Protocol):
    store: BlobStore  # frame size FS, master key `mk`

    def make(
        self, master: MasterKey, *, old_keys: Sequence[MasterKey] = (), frame_size: int = FS
    ) -> BlobStore:
        """Another store over the same location."""
        ...

    def raw_get(self, key: str) -> bytes: ...

    def raw_put(self, key: str, data: bytes) -> None: ...

    def raw_names(self) -> list[str]:
        """Everything the location holds, sorted: objects by key, plus anything else a
        backend could leave behind (temporary files, unfinished uploads) by its own name."""
        ...


class BlobStoreContract:
    """Backend-agnostic blob-store tests; subclasses provide the `harness` fixture."""

    # Tamper tests flip every header byte and every FLIP_STRIDE-th byte after it.
    FLIP_STRIDE = 1

    @pytest.fixture
    def store(self, harness: BlobHarness) -> BlobStore:
        return harness.store

    async def _one(self, h: BlobHarness, n: int = 5 * FS + 10) -> tuple[str, bytes]:
        data = content(n)
        key = okey(data)
        await h.store.put_bytes(key, data)
        return key, data

    @staticmethod
    def _flip(h: BlobHarness, key: str, pos: int) -> None:
        raw = bytearray(h.raw_get(key))
        raw[pos] ^= 0x01
        h.raw_put(key, bytes(raw))

    # ----------------------------------------------------------------------- round trips

    @pytest.mark.parametrize("n", [0, 1, FS - 1, FS, FS + 1, 3 * FS, 5 * FS + 7, 10_000])
    async def test_round_trip_stream(self, store: BlobStore, n: int) -> None:
        data = content(n)
        key = okey(data)
        info = await store.put_stream(key, agen(data, step=37))
        assert info == BlobInfo(key, sha(data), n)
        assert await store.get_bytes(key, expected_sha256=sha(data)) == data
        assert await store.exists(key)

    @pytest.mark.parametrize("frame", [1, 2, 3])
    async def test_tiny_frames(self, harness: BlobHarness, frame: int) -> None:
        s = harness.make(MasterKey.generate(), frame_size=frame)
        for n in (0, 1, 2, 3, 4, 7, 50):
            data = os.urandom(n)
            info = await s.put_stream(f"t/{n}", agen(data, step=2))
            assert await s.get_bytes(f"t/{n}", expected_sha256=info.sha256) == data

    async def test_round_trip_put_bytes_and_default_frame_size(self, harness: BlobHarness) -> None:
        s = harness.make(MasterKey.generate(), frame_size=1 << 20)  # 3 MiB + 5 bytes = 4 frames
        data = os.urandom(3 * (1 << 20) + 5)
        info = await s.put_bytes("parsed/x.md.enc", data)
        assert (info.sha256, info.size) == (sha(data), len(data))
        assert await s.get_bytes("parsed/x.md.enc", expected_sha256=info.sha256) == data
        size = len(harness.raw_get("parsed/x.md.enc"))
        assert size == HEADER_SIZE + len(data) + 4 * TAG_SIZE

    async def test_empty_object(self, harness: BlobHarness) -> None:
        info = await harness.store.put_bytes("e/empty", b"")
        assert info.size == 0 and info.sha256 == sha(b"")
        assert await harness.store.get_bytes("e/empty", expected_sha256=sha(b"")) == b""
        assert len(harness.raw_get("e/empty")) == HEADER_SIZE + TAG_SIZE

    async def test_stream_and_bytes_agree_and_chunking_is_irrelevant(
        self, store: BlobStore
    ) -> None:
        data = content(1000)
        a = await store.put_stream("a/1", agen(data, step=1))
        b = await store.put_stream("a/2", agen(data, step=999))
        c = await store.put_bytes("a/3", data)
        assert a.sha256 == b.sha256 == c.sha256 == sha(data)
        for k in ("a/1", "a/2", "a/3"):
            assert await store.get_bytes(k, expected_sha256=sha(data)) == data

    # differing_executors: every backend's subclass runs this one method; sharing replayed
    # examples between backends is intended (each must pass all of them).
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        data=st.binary(max_size=300_000), frame=st.integers(16, 8192), step=st.integers(1, 70_000)
    )
    def test_round_trip_property(
        self, harness: BlobHarness, data: bytes, frame: int, step: int
    ) -> None:
        async def run() -> None:
            s = harness.make(MasterKey.generate(), frame_size=frame)
            key = f"k/{uuid.uuid4().hex}"  # one location for every example
            info = await s.put_stream(key, agen(data, step=step))
            assert (info.sha256, info.size) == (sha(data), len(data))
            assert await s.get_bytes(key, expected_sha256=info.sha256) == data
            n_frames = max(1, -(-len(data) // frame))
            assert len(harness.raw_get(key)) == HEADER_SIZE + len(data) + n_frames * TAG_SIZE

        asyncio.run(run())

    async def test_protocol_is_satisfied(self, store: BlobStore) -> None:
        assert not await store.exists("nope/x")

    # ----------------------------------------------------------------------- at rest

    async def test_storage_never_holds_plaintext(self, harness: BlobHarness) -> None:
        data = content(5000)
        key = okey(data)
        await harness.store.put_stream(key, agen(data))
        await harness.store.put_bytes("parsed/doc.md.enc", content(300))
        assert harness.raw_names() == sorted([key, "parsed/doc.md.enc"])  # nothing else left
        for name in (key, "parsed/doc.md.enc"):
            raw = harness.raw_get(name)
            assert MARKER not in raw and b"PHI-MARKER" not in raw

    async def test_same_content_twice_is_idempotent_and_different_content_is_refused(
        self, harness: BlobHarness
    ) -> None:
        store = harness.store
        data = content(500)
        key = okey(data)
        first = await store.put_stream(key, agen(data))
        before = harness.raw_get(key)
        assert await store.put_bytes(key, data) == first
        assert await store.put_stream(key, agen(data)) == first
        assert harness.raw_get(key) == before  # not rewritten
        with pytest.raises(BlobExists) as ei:
            await store.put_bytes(key, data + b"!")
        assert ei.value.code is ErrorCode.INTEGRITY_ERROR
        with pytest.raises(BlobExists):
            await store.put_stream(key, agen(data[:-1]))
        assert await store.get_bytes(key, expected_sha256=sha(data)) == data
        assert harness.raw_get(key) == before
        assert harness.raw_names() == [key]

    async def test_concurrent_identical_puts(self, harness: BlobHarness) -> None:
        data = content(3000)
        store = harness.store
        infos = await asyncio.gather(
            *(store.put_stream("c/same", agen(data, 100)) for _ in range(8))
        )
        assert {i.sha256 for i in infos} == {sha(data)}
        assert harness.raw_names() == ["c/same"]
        assert await store.get_bytes("c/same", expected_sha256=sha(data)) == data

    async def test_concurrent_different_puts_one_wins(self, harness: BlobHarness) -> None:
        store = harness.store
        versions = [content(2000 + i) for i in range(6)]
        results = await asyncio.gather(
            *(store.put_stream("c/race", agen(v, 100)) for v in versions), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, BlobInfo)]
        assert len(winners) == 1
        assert all(isinstance(r, BlobExists) for r in results if r is not winners[0])
        stored = await store.get_bytes("c/race", expected_sha256=winners[0].sha256)
        assert sha(stored) == winners[0].sha256
        assert harness.raw_names() == ["c/race"]

    # ----------------------------------------------------------------------- tampering

    async def test_every_single_byte_flip_is_detected(self, harness: BlobHarness) -> None:
        key, data = await self._one(harness)
        original = harness.raw_get(key)
        positions = [*range(HEADER_SIZE), *range(HEADER_SIZE, len(original), self.FLIP_STRIDE)]
        assert positions[-1] >= len(original) - self.FLIP_STRIDE  # reaches the last tag
        for pos in positions:  # header, frame bodies and tags
            raw = bytearray(original)
            raw[pos] ^= 0x01
            harness.raw_put(key, bytes(raw))
            with pytest.raises(BlobIntegrityError) as ei:
                await harness.store.get_bytes(key, expected_sha256=sha(data))
            assert str(
                ei.value
            ) == f"integrity_error: blob {key} failed integrity verification" or (
                isinstance(ei.value, BlobKeyUnavailable)
            )
            assert ei.value.code is ErrorCode.INTEGRITY_ERROR
        harness.raw_put(key, original)
        assert await harness.store.get_bytes(key, expected_sha256=sha(data)) == data

    @pytest.mark.parametrize(
        "where",
        ["magic", "frame_size", "nonce_prefix", "key_id", "wrapped_key", "first", "last_tag"],
    )
    async def test_named_positions(self, harness: BlobHarness, where: str) -> None:
        key, data = await self._one(harness)
        size = len(harness.raw_get(key))
        pos = {
            "magic": 0,
            "frame_size": 11,
            "nonce_prefix": 12,
            "key_id": 20,
            "wrapped_key": HEADER_SIZE - 1,
            "first": HEADER_SIZE,
            "last_tag": size - 1,
        }[where]
        self._flip(harness, key, pos)
        with pytest.raises(BlobIntegrityError):
            await harness.store.get_bytes(key, expected_sha256=sha(data))

    @pytest.mark.parametrize("cut", ["last_frame", "one_byte", "to_header", "half_header", "empty"])
    async def test_truncation_is_detected(self, harness: BlobHarness, cut: str) -> None:
        key, data = await self._one(harness)  # 6 frames, last one 10 bytes
        raw = harness.raw_get(key)
        new_len = {
            "last_frame": len(raw) - (10 + TAG_SIZE),  # a whole frame: earlier ones are not final
            "one_byte": len(raw) - 1,
            "to_header": HEADER_SIZE,
            "half_header": HEADER_SIZE // 2,
            "empty": 0,
        }[cut]
        harness.raw_put(key, raw[:new_len])
        with pytest.raises(BlobIntegrityError):
            await harness.store.get_bytes(key, expected_sha256=sha(data))

    async def test_appended_frame_and_reordered_frames_are_detected(
        self, harness: BlobHarness
    ) -> None:
        data = content(4 * FS)  # exactly 4 full frames
        key = okey(data)
        await harness.store.put_bytes(key, data)
        raw = harness.raw_get(key)
        per = FS + TAG_SIZE
        frames = [raw[HEADER_SIZE + i * per : HEADER_SIZE + (i + 1) * per] for i in range(4)]
        harness.raw_put(key, raw[:HEADER_SIZE] + frames[1] + frames[0] + frames[2] + frames[3])
        with pytest.raises(BlobIntegrityError):
            await harness.store.get_bytes(key, expected_sha256=sha(data))
        harness.raw_put(key, raw + frames[3])  # duplicate the final frame
        with pytest.raises(BlobIntegrityError):
            await harness.store.get_bytes(key, expected_sha256=sha(data))

    async def test_frames_and_objects_cannot_move_between_keys(self, harness: BlobHarness) -> None:
        a = content(3 * FS)
        b = bytes(reversed(a))
        await harness.store.put_bytes("x/a", a)
        await harness.store.put_bytes("x/b", b)
        ra, rb = harness.raw_get("x/a"), harness.raw_get("x/b")
        per = FS + TAG_SIZE
        # swap the second frame of the two objects
        sa, sb = HEADER_SIZE + per, HEADER_SIZE + 2 * per
        harness.raw_put("x/a", ra[:sa] + rb[sa:sb] + ra[sb:])
        with pytest.raises(BlobIntegrityError):
            await harness.store.get_bytes("x/a", expected_sha256=sha(a))
        # the whole object copied under another key (same master key)
        harness.raw_put("x/a", rb)
        with pytest.raises(BlobIntegrityError):
            await harness.store.get_bytes("x/a", expected_sha256=sha(b))
        # b's header on a's frames
        harness.raw_put("x/a", rb[:HEADER_SIZE] + ra[HEADER_SIZE:])
        with pytest.raises(BlobIntegrityError):
            await harness.store.get_bytes("x/a", expected_sha256=sha(a))

    async def test_wrong_expected_sha256(self, harness: BlobHarness) -> None:
        key, data = await self._one(harness)
        store = harness.store
        with pytest.raises(BlobIntegrityError) as ei:
            await store.get_bytes(key, expected_sha256=sha(data + b"x"))
        assert ei.value.reason == "sha256"
        assert await store.get_bytes(key, expected_sha256=sha(data).upper()) == data
        with pytest.raises(ValueError):
            await store.get_bytes(key, expected_sha256="abc")

    async def test_error_messages_carry_no_content(self, harness: BlobHarness) -> None:
        key, data = await self._one(harness)
        self._flip(harness, key, HEADER_SIZE + 3)
        with pytest.raises(BlobIntegrityError) as ei:
            await harness.store.get_bytes(key, expected_sha256=sha(data))
        text = str(ei.value) + repr(ei.value)
        assert "PHI" not in text and key in text

    # ----------------------------------------------------------------------- limits, keys

    async def test_max_bytes_enforced_and_nothing_left(self, harness: BlobHarness) -> None:
        store = harness.store
        data = content(10 * FS)
        with pytest.raises(BlobTooLarge) as ei:
            await store.put_stream("big/x", agen(data, 50), max_bytes=len(data) - 1)
        assert ei.value.code is ErrorCode.TOO_LARGE
        assert isinstance(ei.value, DocingestError)
        assert harness.raw_names() == []
        assert not await store.exists("big/x")
        info = await store.put_stream("big/x", agen(data, 50), max_bytes=len(data))
        assert info.size == len(data)

    async def test_failing_source_and_cancellation_leave_nothing(
        self, harness: BlobHarness
    ) -> None:
        store = harness.store

        async def broken() -> AsyncIterator[bytes]:
            yield content(5 * FS)
            raise ConnectionResetError

        with pytest.raises(ConnectionResetError):
            await store.put_stream("f/x", broken())

        gate = asyncio.Event()

        async def stalled() -> AsyncIterator[bytes]:
            yield content(3 * FS)
            gate.set()
            await asyncio.sleep(3600)
            yield b""

        task = asyncio.create_task(store.put_stream("f/y", stalled()))
        await gate.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert harness.raw_names() == []

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "/abs/path",
            "../escape",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            ".hidden",
            "a/.tmp-123",
            "a\\b",
            "a b",
            "ünïcode",
            "a\x00b",
            "x" * 129,
            "/".join(["a"] * 17),
        ],
    )
    async def test_key_validation(self, store: BlobStore, bad: str) -> None:
        with pytest.raises(ValueError) as ei:
            await store.put_bytes(bad, b"x")
        assert bad not in str(ei.value) or bad == ""
        with pytest.raises(ValueError):
            await store.put_stream(bad, agen(b"x"))
        with pytest.raises(ValueError):
            await store.get_bytes(bad, expected_sha256=sha(b"x"))
        with pytest.raises(ValueError):
            await store.exists(bad)
        with pytest.raises(ValueError):
            await store.delete(bad)

    async def test_delete_exists_not_found(self, harness: BlobHarness) -> None:
        store = harness.store
        key, data = await self._one(harness)
        assert await store.exists(key)
        assert await store.delete(key) is True
        assert await store.delete(key) is False
        assert not await store.exists(key)
        with pytest.raises(BlobNotFound) as ei:
            await store.get_bytes(key, expected_sha256=sha(data))
        assert ei.value.code is ErrorCode.INTEGRITY_ERROR
        with pytest.raises(BlobNotFound):
            store.key_id_of(key)
        with pytest.raises(BlobNotFound):
            store.rewrap(key, MasterKey.generate())
        assert harness.raw_names() == []

    async def test_iter_keys(self, store: BlobStore) -> None:
        await store.put_bytes("raw/u1/a.pdf.enc", b"1")
        await store.put_bytes("raw/u2/b.pdf.enc", b"2")
        await store.put_bytes("parsed/u1/c.md.enc", b"3")
        assert sorted(store.iter_keys()) == [
            "parsed/u1/c.md.enc",
            "raw/u1/a.pdf.enc",
            "raw/u2/b.pdf.enc",
        ]
        assert list(store.iter_keys("raw/u1/")) == ["raw/u1/a.pdf.enc"]
        assert list(store.iter_keys("nothing/")) == []

    # ----------------------------------------------------------------------- rotation

    async def test_rewrap_then_read_with_new_key_only(self, harness: BlobHarness) -> None:
        old, new = MasterKey.generate(), MasterKey.generate()
        s_old = harness.make(old)
        data = content(7 * FS + 3)
        key = okey(data)
        await s_old.put_bytes(key, data)
        frames_before = harness.raw_get(key)[HEADER_SIZE:]
        assert s_old.key_id_of(key) == old.key_id

        rotating = harness.make(new, old_keys=[old])
        rotating.rewrap(key, new)
        assert rotating.key_id_of(key) == new.key_id
        assert harness.raw_get(key)[HEADER_SIZE:] == frames_before  # frames untouched
        rotating.rewrap(key, new)  # idempotent
        assert harness.raw_names() == [key]

        only_new = harness.make(new)
        assert await only_new.get_bytes(key, expected_sha256=sha(data)) == data
        assert await rotating.get_bytes(key, expected_sha256=sha(data)) == data

        only_old = harness.make(old)
        with pytest.raises(BlobKeyUnavailable) as ei:
            await only_old.get_bytes(key, expected_sha256=sha(data))
        assert ei.value.code is ErrorCode.INTEGRITY_ERROR
        assert new.key_id in str(ei.value)
        with pytest.raises(BlobKeyUnavailable):
            only_old.rewrap(key, MasterKey.generate())

    async def test_rewrap_refuses_a_tampered_header(self, harness: BlobHarness) -> None:
        old, new = MasterKey.generate(), MasterKey.generate()
        s = harness.make(old)
        await s.put_bytes("r/x", content(100))
        self._flip(harness, "r/x", HEADER_SIZE - 5)
        with pytest.raises(BlobIntegrityError):
            s.rewrap("r/x", new)
        assert s.key_id_of("r/x") == old.key_id

    async def test_unknown_master_key_fails_closed(self, harness: BlobHarness) -> None:
        key, data = await self._one(harness)
        stranger = harness.make(MasterKey.generate())
        with pytest.raises(BlobKeyUnavailable):
            await stranger.get_bytes(key, expected_sha256=sha(data))
