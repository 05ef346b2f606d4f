"""What `store/at_rest.py` can honestly tell about the embedded database's storage: a data
directory on dm-crypt (directly, or under LVM) or ecryptfs is encrypted; anything else is not
shown encrypted; a configured database counts only when the operator declares it."""

from __future__ import annotations

from pathlib import Path

import pytest

from docingest.config import ConfigError, Settings
from docingest.store import at_rest

MOUNTS = """\
22 1 253:1 / / rw,relatime - ext4 {dev}/mapper/vg-root rw
23 22 0:5 / /dev rw - devtmpfs udev rw
30 22 8:1 / /plain rw - ext4 {dev}/sdb1 rw
31 22 0:40 / /home/me/private rw - ecryptfs /home/me/.Private rw
"""


def sys_tree(root: Path) -> Path:
    """/sys/class/block for LVM (dm-1) on LUKS (dm-0) on sda2, and a plain sdb1."""
    block = root / "sys"
    for name, uuid, slaves in (
        ("dm-1", "LVM-abc", ["dm-0"]),
        ("dm-0", "CRYPT-LUKS2-0123-root", ["sda2"]),
    ):
        (block / name / "dm").mkdir(parents=True)
        (block / name / "dm" / "uuid").write_text(uuid + "\n")
        (block / name / "slaves").mkdir()
        for s in slaves:
            (block / name / "slaves" / s).mkdir()
    for name in ("sda2", "sdb1"):
        (block / name).mkdir()
    return block


@pytest.fixture
def fake_sys(tmp_path: Path) -> tuple[Path, Path]:
    """A mount table and /sys tree on disk; device nodes are files, /dev/mapper names are
    symlinks to them, as udev makes them."""
    dev = tmp_path / "dev"
    (dev / "mapper").mkdir(parents=True)
    for node in ("dm-1", "sdb1"):
        (dev / node).touch()
    (dev / "mapper" / "vg-root").symlink_to(dev / "dm-1")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTS.format(dev=dev))
    return mountinfo, sys_tree(tmp_path)


@pytest.mark.parametrize(
    ("path", "encrypted"),
    [
        ("/var/lib/docingest/pg", True),  # / is LVM on LUKS
        ("/plain/docingest/pg", False),
        ("/home/me/private/pg", True),  # ecryptfs
        ("/plainer/pg", True),  # not under /plain: the root mount
    ],
)
def test_embedded_storage(fake_sys: tuple[Path, Path], path: str, encrypted: bool) -> None:
    mountinfo, block = fake_sys
    state = at_rest.embedded_storage(Path(path), mountinfo=mountinfo, sys_block=block)
    assert state.encrypted is encrypted, state


def test_configured_database_needs_a_declaration(tmp_path: Path) -> None:
    base = {"DOCINGEST_HOME": str(tmp_path), "DOCINGEST_DATABASE_URL": "postgresql://db/x"}
    assert not at_rest.check(Settings.from_env(base)).encrypted
    declared = Settings.from_env({**base, "DOCINGEST_DB_ENCRYPTED_AT_REST": "true"})
    assert at_rest.check(declared).encrypted
    strict = Settings.from_env({**base, "DOCINGEST_DB_ENCRYPTION_POLICY": "require"})
    with pytest.raises(ConfigError, match="DOCINGEST_DB_ENCRYPTION_POLICY"):
        at_rest.enforce(strict)
    at_rest.enforce(Settings.from_env(base))  # warn: starts all the same
