"""Encrypted blob store and master key (DESIGN.md §8, CONTRACTS.md §4)."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import multiprocessing
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
    LocalBlobStore,
)
from docingest.store.keys import MasterKey, load_master_key

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


@pytest.fixture
def mk() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def store(tmp_path: Path, mk: MasterKey) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", mk, frame_size=FS)


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("n", [0, 1, FS - 1, FS, FS + 1, 3 * FS, 5 * FS + 7, 10_000])
async def test_round_trip_stream(store: LocalBlobStore, n: int) -> None:
    data = content(n)
    key = okey(data)
    info = await store.put_stream(key, agen(data, step=37))
    assert info == BlobInfo(key, sha(data), n)
    assert await store.get_bytes(key, expected_sha256=sha(data)) == data
    assert await store.exists(key)


@pytest.mark.parametrize("frame", [1, 2, 3])
async def test_tiny_frames(tmp_path: Path, mk: MasterKey, frame: int) -> None:
    s = LocalBlobStore(tmp_path, mk, frame_size=frame)
    for n in (0, 1, 2, 3, 4, 7, 50):
        data = os.urandom(n)
        info = await s.put_stream(f"t/{n}", agen(data, step=2))
        assert await s.get_bytes(f"t/{n}", expected_sha256=info.sha256) == data


async def test_round_trip_put_bytes_and_default_frame_size(tmp_path: Path, mk: MasterKey) -> None:
    s = LocalBlobStore(tmp_path / "b", mk)  # 1 MiB frames: 3 MiB + 5 bytes = 4 frames
    data = os.urandom(3 * (1 << 20) + 5)
    info = await s.put_bytes("parsed/x.md.enc", data)
    assert (info.sha256, info.size) == (sha(data), len(data))
    assert await s.get_bytes("parsed/x.md.enc", expected_sha256=info.sha256) == data
    size = (tmp_path / "b" / "parsed" / "x.md.enc").stat().st_size
    assert size == HEADER_SIZE + len(data) + 4 * TAG_SIZE


async def test_empty_object(store: LocalBlobStore) -> None:
    info = await store.put_bytes("e/empty", b"")
    assert info.size == 0 and info.sha256 == sha(b"")
    assert await store.get_bytes("e/empty", expected_sha256=sha(b"")) == b""
    assert (store.root / "e" / "empty").stat().st_size == HEADER_SIZE + TAG_SIZE


async def test_stream_and_bytes_agree_and_chunking_is_irrelevant(store: LocalBlobStore) -> None:
    data = content(1000)
    a = await store.put_stream("a/1", agen(data, step=1))
    b = await store.put_stream("a/2", agen(data, step=999))
    c = await store.put_bytes("a/3", data)
    assert a.sha256 == b.sha256 == c.sha256 == sha(data)
    for k in ("a/1", "a/2", "a/3"):
        assert await store.get_bytes(k, expected_sha256=sha(data)) == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300_000), frame=st.integers(16, 8192), step=st.integers(1, 70_000))
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, frame: int, step: int
) -> None:
    async def run() -> None:
        s = LocalBlobStore(tmp_path_factory.mktemp("p"), MasterKey.generate(), frame_size=frame)
        info = await s.put_stream("k/obj", agen(data, step=step))
        assert (info.sha256, info.size) == (sha(data), len(data))
        assert await s.get_bytes("k/obj", expected_sha256=info.sha256) == data
        n_frames = max(1, -(-len(data) // frame))
        assert (s.root / "k" / "obj").stat().st_size == HEADER_SIZE + len(
            data
        ) + n_frames * TAG_SIZE

    asyncio.run(run())


async def test_protocol_is_satisfied(store: LocalBlobStore) -> None:
    s: BlobStore = store
    assert not await s.exists("nope/x")


# --------------------------------------------------------------------------- at rest


async def test_disk_never_holds_plaintext_and_modes_are_private(store: LocalBlobStore) -> None:
    data = content(5000)
    key = okey(data)
    await store.put_stream(key, agen(data))
    await store.put_bytes("parsed/doc.md.enc", content(300))
    files = all_files(store.root)
    assert len(files) == 2  # no temp files left behind
    for f in files:
        raw = f.read_bytes()
        assert MARKER not in raw and b"PHI-MARKER" not in raw
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    for d in [store.root, *(p for p in store.root.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


async def test_same_content_twice_is_idempotent_and_different_content_is_refused(
    store: LocalBlobStore,
) -> None:
    data = content(500)
    key = okey(data)
    first = await store.put_stream(key, agen(data))
    before = (store.root / key).read_bytes()
    assert await store.put_bytes(key, data) == first
    assert (store.root / key).read_bytes() == before  # not rewritten
    with pytest.raises(BlobExists) as ei:
        await store.put_bytes(key, data + b"!")
    assert ei.value.code is ErrorCode.INTEGRITY_ERROR
    assert await store.get_bytes(key, expected_sha256=sha(data)) == data
    assert len(all_files(store.root)) == 1


async def test_puts_without_hard_links(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(os, "link", _no_hardlinks)
    data = content(300)
    info = await store.put_stream("n/x", agen(data))
    assert await store.put_bytes("n/x", data) == info
    with pytest.raises(BlobExists):
        await store.put_bytes("n/x", data[:-1])
    assert await store.get_bytes("n/x", expected_sha256=sha(data)) == data
    assert all_files(store.root) == [store.root / "n" / "x"]


async def test_concurrent_identical_puts(store: LocalBlobStore) -> None:
    data = content(3000)
    infos = await asyncio.gather(*(store.put_stream("c/same", agen(data, 100)) for _ in range(8)))
    assert {i.sha256 for i in infos} == {sha(data)}
    assert len(all_files(store.root)) == 1


# --------------------------------------------------------------------------- tampering


async def _one(store: LocalBlobStore, n: int = 5 * FS + 10) -> tuple[str, bytes, Path]:
    data = content(n)
    key = okey(data)
    await store.put_bytes(key, data)
    return key, data, store.root / key


def _flip(path: Path, pos: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[pos] ^= 0x01
    path.write_bytes(bytes(raw))


async def test_every_single_byte_flip_is_detected(store: LocalBlobStore) -> None:
    key, data, path = await _one(store)
    original = path.read_bytes()
    for pos in range(len(original)):  # header, every frame body and every tag
        path.write_bytes(original)
        _flip(path, pos)
        with pytest.raises(BlobIntegrityError) as ei:
            await store.get_bytes(key, expected_sha256=sha(data))
        assert str(ei.value) == f"integrity_error: blob {key} failed integrity verification" or (
            isinstance(ei.value, BlobKeyUnavailable)
        )
        assert ei.value.code is ErrorCode.INTEGRITY_ERROR
    path.write_bytes(original)
    assert await store.get_bytes(key, expected_sha256=sha(data)) == data


@pytest.mark.parametrize(
    "where", ["magic", "frame_size", "nonce_prefix", "key_id", "wrapped_key", "first", "last_tag"]
)
async def test_named_positions(store: LocalBlobStore, where: str) -> None:
    key, data, path = await _one(store)
    size = path.stat().st_size
    pos = {
        "magic": 0,
        "frame_size": 11,
        "nonce_prefix": 12,
        "key_id": 20,
        "wrapped_key": HEADER_SIZE - 1,
        "first": HEADER_SIZE,
        "last_tag": size - 1,
    }[where]
    _flip(path, pos)
    with pytest.raises(BlobIntegrityError):
        await store.get_bytes(key, expected_sha256=sha(data))


@pytest.mark.parametrize("cut", ["last_frame", "one_byte", "to_header", "half_header", "empty"])
async def test_truncation_is_detected(store: LocalBlobStore, cut: str) -> None:
    key, data, path = await _one(store)  # 6 frames, last one 10 bytes
    raw = path.read_bytes()
    new_len = {
        "last_frame": len(raw) - (10 + TAG_SIZE),  # a whole frame: earlier ones are not final
        "one_byte": len(raw) - 1,
        "to_header": HEADER_SIZE,
        "half_header": HEADER_SIZE // 2,
        "empty": 0,
    }[cut]
    path.write_bytes(raw[:new_len])
    with pytest.raises(BlobIntegrityError):
        await store.get_bytes(key, expected_sha256=sha(data))


async def test_appended_frame_and_reordered_frames_are_detected(store: LocalBlobStore) -> None:
    data = content(4 * FS)  # exactly 4 full frames
    key = okey(data)
    await store.put_bytes(key, data)
    path = store.root / key
    raw = path.read_bytes()
    per = FS + TAG_SIZE
    frames = [raw[HEADER_SIZE + i * per : HEADER_SIZE + (i + 1) * per] for i in range(4)]
    path.write_bytes(raw[:HEADER_SIZE] + frames[1] + frames[0] + frames[2] + frames[3])
    with pytest.raises(BlobIntegrityError):
        await store.get_bytes(key, expected_sha256=sha(data))
    path.write_bytes(raw + frames[3])  # duplicate the final frame
    with pytest.raises(BlobIntegrityError):
        await store.get_bytes(key, expected_sha256=sha(data))


async def test_frames_and_files_cannot_move_between_objects(store: LocalBlobStore) -> None:
    a = content(3 * FS)
    b = bytes(reversed(a))
    await store.put_bytes("x/a", a)
    await store.put_bytes("x/b", b)
    pa, pb = store.root / "x" / "a", store.root / "x" / "b"
    ra, rb = pa.read_bytes(), pb.read_bytes()
    per = FS + TAG_SIZE
    # swap the second frame of the two objects
    sa, sb = HEADER_SIZE + per, HEADER_SIZE + 2 * per
    pa.write_bytes(ra[:sa] + rb[sa:sb] + ra[sb:])
    with pytest.raises(BlobIntegrityError):
        await store.get_bytes("x/a", expected_sha256=sha(a))
    # the whole file copied under another key (same master key)
    pa.write_bytes(rb)
    with pytest.raises(BlobIntegrityError):
        await store.get_bytes("x/a", expected_sha256=sha(b))
    # b's header on a's frames
    pa.write_bytes(rb[:HEADER_SIZE] + ra[HEADER_SIZE:])
    with pytest.raises(BlobIntegrityError):
        await store.get_bytes("x/a", expected_sha256=sha(a))


async def test_wrong_expected_sha256(store: LocalBlobStore) -> None:
    key, data, _ = await _one(store)
    with pytest.raises(BlobIntegrityError) as ei:
        await store.get_bytes(key, expected_sha256=sha(data + b"x"))
    assert ei.value.reason == "sha256"
    assert await store.get_bytes(key, expected_sha256=sha(data).upper()) == data
    with pytest.raises(ValueError):
        await store.get_bytes(key, expected_sha256="abc")


async def test_error_messages_carry_no_content(store: LocalBlobStore) -> None:
    key, data, path = await _one(store)
    _flip(path, HEADER_SIZE + 3)
    with pytest.raises(BlobIntegrityError) as ei:
        await store.get_bytes(key, expected_sha256=sha(data))
    text = str(ei.value) + repr(ei.value)
    assert "PHI" not in text and key in text


# --------------------------------------------------------------------------- limits, keys


async def test_max_bytes_enforced_and_no_temp_file_left(store: LocalBlobStore) -> None:
    data = content(10 * FS)
    with pytest.raises(BlobTooLarge) as ei:
        await store.put_stream("big/x", agen(data, 50), max_bytes=len(data) - 1)
    assert ei.value.code is ErrorCode.TOO_LARGE
    assert isinstance(ei.value, DocingestError)
    assert all_files(store.root) == []
    assert not await store.exists("big/x")
    info = await store.put_stream("big/x", agen(data, 50), max_bytes=len(data))
    assert info.size == len(data)


async def test_failing_source_and_cancellation_leave_no_temp_file(store: LocalBlobStore) -> None:
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
    assert all_files(store.root) == []


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
async def test_key_validation(store: LocalBlobStore, bad: str) -> None:
    with pytest.raises(ValueError) as ei:
        await store.put_bytes(bad, b"x")
    assert bad not in str(ei.value) or bad == ""
    with pytest.raises(ValueError):
        await store.get_bytes(bad, expected_sha256=sha(b"x"))
    with pytest.raises(ValueError):
        await store.exists(bad)
    with pytest.raises(ValueError):
        await store.delete(bad)


async def test_delete_exists_not_found(store: LocalBlobStore) -> None:
    key, data, _ = await _one(store)
    assert await store.exists(key)
    assert await store.delete(key) is True
    assert await store.delete(key) is False
    assert not await store.exists(key)
    with pytest.raises(BlobNotFound) as ei:
        await store.get_bytes(key, expected_sha256=sha(data))
    assert ei.value.code is ErrorCode.INTEGRITY_ERROR
    with pytest.raises(BlobNotFound):
        store.key_id_of(key)


async def test_iter_keys(store: LocalBlobStore) -> None:
    await store.put_bytes("raw/u1/a.pdf.enc", b"1")
    await store.put_bytes("raw/u2/b.pdf.enc", b"2")
    await store.put_bytes("parsed/u1/c.md.enc", b"3")
    assert sorted(store.iter_keys()) == [
        "parsed/u1/c.md.enc",
        "raw/u1/a.pdf.enc",
        "raw/u2/b.pdf.enc",
    ]
    assert list(store.iter_keys("raw/u1/")) == ["raw/u1/a.pdf.enc"]


# --------------------------------------------------------------------------- rotation


async def test_rewrap_then_read_with_new_key_only(tmp_path: Path) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    root = tmp_path / "blobs"
    s_old = LocalBlobStore(root, old, frame_size=FS)
    data = content(7 * FS + 3)
    key = okey(data)
    await s_old.put_bytes(key, data)
    frames_before = (root / key).read_bytes()[HEADER_SIZE:]
    assert s_old.key_id_of(key) == old.key_id

    rotating = LocalBlobStore(root, new, old_keys=[old], frame_size=FS)
    rotating.rewrap(key, new)
    assert rotating.key_id_of(key) == new.key_id
    assert (root / key).read_bytes()[HEADER_SIZE:] == frames_before  # frames untouched
    assert stat.S_IMODE((root / key).stat().st_mode) == 0o600
    rotating.rewrap(key, new)  # idempotent
    assert all_files(root) == [root / key]

    only_new = LocalBlobStore(root, new)
    assert await only_new.get_bytes(key, expected_sha256=sha(data)) == data
    assert await rotating.get_bytes(key, expected_sha256=sha(data)) == data

    only_old = LocalBlobStore(root, old)
    with pytest.raises(BlobKeyUnavailable) as ei:
        await only_old.get_bytes(key, expected_sha256=sha(data))
    assert ei.value.code is ErrorCode.INTEGRITY_ERROR
    assert new.key_id in str(ei.value)
    with pytest.raises(BlobKeyUnavailable):
        only_old.rewrap(key, MasterKey.generate())


async def test_rewrap_refuses_a_tampered_header(tmp_path: Path) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    s = LocalBlobStore(tmp_path, old, frame_size=FS)
    await s.put_bytes("r/x", content(100))
    _flip(tmp_path / "r" / "x", HEADER_SIZE - 5)
    with pytest.raises(BlobIntegrityError):
        s.rewrap("r/x", new)
    assert s.key_id_of("r/x") == old.key_id


async def test_unknown_master_key_fails_closed(store: LocalBlobStore, tmp_path: Path) -> None:
    key, data, _ = await _one(store)
    stranger = LocalBlobStore(store.root, MasterKey.generate())
    with pytest.raises(BlobKeyUnavailable):
        await stranger.get_bytes(key, expected_sha256=sha(data))


# --------------------------------------------------------------------------- master key


def test_master_key_repr_hides_material() -> None:
    k = MasterKey.generate()
    assert k.raw.hex() not in repr(k) and k.to_text() not in repr(k) and str(k.raw) not in repr(k)
    assert k.key_id in repr(k)
    assert k.key_id == hashlib.sha256(k.raw).hexdigest()[:8]
    with pytest.raises(ValueError):
        MasterKey(b"short")


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    k1 = load_master_key(home, None)
    path = home / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == k1.raw
    k2 = load_master_key(home, None)
    assert k2 == k1
    assert [p.name for p in home.iterdir()] == ["master.key"]  # no temp files left


def test_env_key_formats(tmp_path: Path) -> None:
    raw = os.urandom(32)
    for text in (
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        raw.hex().upper(),
        f"  {raw.hex()}\n",
    ):
        assert load_master_key(tmp_path, text).raw == raw
    assert not (tmp_path / "master.key").exists()  # env wins, no file written


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not a key",
        base64.b64encode(os.urandom(31)).decode(),
        base64.b64encode(os.urandom(33)).decode(),
        "ab" * 31,
        "zz" * 32,
    ],
)
def test_bad_env_key_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError) as ei:
        load_master_key(tmp_path, bad)
    assert str(ei.value) == "DOCINGEST_MASTER_KEY must be 32 bytes, base64 or hex"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_loose_key_file_refused(tmp_path: Path, mode: int) -> None:
    k = load_master_key(tmp_path, None)
    path = tmp_path / "master.key"
    path.chmod(mode)
    with pytest.raises(ValueError) as ei:
        load_master_key(tmp_path, None)
    msg = str(ei.value)
    assert oct(mode) in msg and str(path) in msg
    assert k.to_text() not in msg and k.raw.hex() not in msg


def test_garbage_key_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"QZXW-not-a-key")
    os.close(fd)
    with pytest.raises(ValueError) as ei:
        load_master_key(tmp_path, None)
    assert "QZXW" not in str(ei.value)


def test_symlinked_key_file_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.key"
    target.write_text(MasterKey.generate().to_text())
    target.chmod(0o600)
    (tmp_path / "master.key").symlink_to(target)
    with pytest.raises(OSError):
        load_master_key(tmp_path, None)


def _no_hardlinks(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.EPERM, "hard links not supported")


def test_key_file_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from docingest.store import keys

    monkeypatch.setattr(os, "link", _no_hardlinks)
    k1 = load_master_key(tmp_path, None)
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    assert load_master_key(tmp_path, None) == k1
    assert keys._create_key_file(tmp_path / "master.key") == k1  # loser path, in place
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


def test_loser_of_creation_race_reads_winners_file(tmp_path: Path) -> None:
    from docingest.store import keys

    winner = load_master_key(tmp_path, None)
    # A process that saw no file and then tries to create one must end up with the winner's key.
    assert keys._create_key_file(tmp_path / "master.key") == winner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key"]


def _race_worker(home: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    saw_file = (Path(home) / "master.key").exists()
    out.put((load_master_key(Path(home), None).key_id, saw_file))


def test_concurrent_key_creation_by_processes_gives_one_key(tmp_path: Path) -> None:
    # spawn, not fork: safe whatever threads the test process has started.
    ctx = multiprocessing.get_context("spawn")
    n = 4
    home = tmp_path / "home"
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(str(home), barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    on_disk = load_master_key(home, None)
    assert {key_id for key_id, _ in results} == {on_disk.key_id}
    assert sorted(p.name for p in home.iterdir()) == ["master.key"]
