"""requirements.lock (what the Docker image installs, with --require-hashes) pins every
runtime dependency of pyproject.toml at a version its specifier allows, with hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")


def _locked() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) for every entry of the lock file."""
    entries: dict[str, tuple[Version, int]] = {}
    current: str | None = None
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        pin = _PIN.match(line)
        if pin:
            current = canonicalize_name(pin.group(1))
            entries[current] = (Version(pin.group(2)), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
        elif not line.startswith(" "):
            current = None
    return entries


def _dependencies() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_within_its_specifier() -> None:
    locked = _locked()
    for req in _dependencies():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock: run `make lock`"
        version, _ = locked[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {req.name}=={version}, outside {req.specifier}: run `make lock`"
        )


def test_every_pin_carries_a_hash() -> None:
    locked = _locked()
    assert len(locked) > len(_dependencies())  # transitive dependencies are pinned too
    assert all(hashes >= 1 for _, hashes in locked.values())


def test_the_image_installs_from_the_lock_with_hashes_required() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
