"""Encrypted blob store on a local folder, and the master key (DESIGN.md §8, CONTRACTS.md §4).

The backend-agnostic contract (`tests/blob_contract.py`) runs here against LocalBlobStore;
the tests below it are about local files: modes, hard links, the master key file."""

from __future__ import annotations

import base64
import errno
import hashlib
import multiprocessing
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from docingest.store.blobs import BlobExists, LocalBlobStore
from docingest.store.keys import MasterKey, load_master_key
from tests.blob_contract import FS, BlobStoreContract, agen, content, okey, sha


class LocalHarness:
    """A fresh folder, and its files as the raw objects."""

    def __init__(self, root: Path, mk: MasterKey) -> None:
        self.root = root
        self.store = LocalBlobStore(root, mk, frame_size=FS)

    def make(
        self, master: MasterKey, *, old_keys: Sequence[MasterKey] = (), frame_size: int = FS
    ) -> LocalBlobStore:
        return LocalBlobStore(self.root, master, old_keys=old_keys, frame_size=frame_size)

    def raw_get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def raw_put(self, key: str, data: bytes) -> None:
        (self.root / key).write_bytes(data)

    def raw_names(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in all_files(self.root))


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.fixture
def mk() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def local(tmp_path: Path, mk: MasterKey) -> LocalHarness:
    return LocalHarness(tmp_path / "blobs", mk)


class TestLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    def harness(self, local: LocalHarness) -> LocalHarness:
        return local


# --------------------------------------------------------------------------- local files


async def test_files_are_private(local: LocalHarness) -> None:
    data = content(5000)
    await local.store.put_stream(okey(data), agen(data))
    await local.store.put_bytes("parsed/doc.md.enc", content(300))
    files = all_files(local.root)
    assert len(files) == 2
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    for d in [local.root, *(p for p in local.root.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


async def test_puts_without_hard_links(
    local: LocalHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _no_hardlinks)
    store = local.store
    data = content(300)
    info = await store.put_stream("n/x", agen(data))
    assert await store.put_bytes("n/x", data) == info
    with pytest.raises(BlobExists):
        await store.put_bytes("n/x", data[:-1])
    assert await store.get_bytes("n/x", expected_sha256=sha(data)) == data
    assert all_files(local.root) == [local.root / "n" / "x"]


async def test_rewrap_keeps_the_file_private(local: LocalHarness) -> None:
    await local.store.put_bytes("r/x", content(100))
    new = MasterKey.generate()
    local.store.rewrap("r/x", new)
    assert local.store.key_id_of("r/x") == new.key_id
    assert stat.S_IMODE((local.root / "r" / "x").stat().st_mode) == 0o600
    assert all_files(local.root) == [local.root / "r" / "x"]


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
        base64.b64encode(bytes(range(31))).decode(),  # a key one byte short
        base64.b64encode(bytes(range(33))).decode(),  # one byte long
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
