"""`docingest keys rotate` / `keys retire` on the key files, while a process keeps writing
and reading blobs through a store built before the rotation (no downtime)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

import pytest

from docingest import bootstrap
from docingest.config import Settings
from docingest.store.blobs import BlobKeyUnavailable, LocalBlobStore
from docingest.store.keys import PREVIOUS_FILE_NAME, load_master_key

PRE_ROTATION = 100  # blobs written before the rotation (enough that re-wrapping takes a while)


async def _cli(home: Path, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINGEST_")}
    env["DOCINGEST_HOME"] = str(home)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docingest",
        "keys",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_rotation_rewraps_every_blob_while_a_process_keeps_working(tmp_path: Path) -> None:
    home = tmp_path / "home"
    running = bootstrap.blob_store(Settings.from_env({"DOCINGEST_HOME": str(home)}))
    old = load_master_key(home, None)
    written: dict[str, str] = {}

    async def put(key: str) -> None:
        data = os.urandom(2048) + key.encode()
        written[key] = (await running.put_bytes(key, data)).sha256
        assert written[key] == hashlib.sha256(data).hexdigest()

    for i in range(PRE_ROTATION):
        await put(f"before/{i % 10}/{i}")

    rotate = await _cli(home, "rotate")
    finished = asyncio.create_task(rotate.communicate())
    during = 0
    while not finished.done():  # the running process writes and reads throughout
        await put(f"during/{during}")
        probe = f"before/{during % 10}/{during % PRE_ROTATION}"
        await running.get_bytes(probe, expected_sha256=written[probe])
        during += 1
        await asyncio.wait({finished}, timeout=0.05)  # pace: about 20 writes a second
    out, err = await finished
    assert rotate.returncode == 0, err.decode()
    assert during > 0

    new = load_master_key(home, None)
    assert new.key_id != old.key_id
    assert f"new master key id {new.key_id}" in out.decode()
    assert (home / PREVIOUS_FILE_NAME).exists()  # kept for writes begun before the switch
    await put("after/0")
    assert running.key_id_of("after/0") == new.key_id  # the process follows the key file

    retire = await _cli(home, "retire")
    _, err = await retire.communicate()
    assert retire.returncode == 0, err.decode()
    assert not (home / PREVIOUS_FILE_NAME).exists()

    only_new = LocalBlobStore(home / "blobs", new)
    only_old = LocalBlobStore(home / "blobs", old)
    assert set(only_new.iter_keys()) == set(written)  # nothing written concurrently is lost
    for key, sha in written.items():
        assert only_new.key_id_of(key) == new.key_id
        assert await only_new.get_bytes(key, expected_sha256=sha)
        with pytest.raises(BlobKeyUnavailable):
            await only_old.get_bytes(key, expected_sha256=sha)
