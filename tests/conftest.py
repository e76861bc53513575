"""Shared fixtures: the OpenZFS test streams in shared/, and a real ZFS pool (zfs-fuse).

Nothing here skips: a missing shared/ directory or a zfs-fuse that cannot start fails the
tests that need them, with the reason.
"""

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

import zfsfuse  # tests/ is on sys.path (pytest puts the rootdir conftest's folder there);
from helpers import REPO  # importing zfsfuse put the repository there too

from zfsglacier.zfs import ZfsCli


def shared_dir(*parts: str) -> Path:
    """<repo>/../shared/<parts>: shared/ sits beside the repository, wherever it is cloned."""
    path = REPO.parent.joinpath("shared", *parts)
    if not path.is_dir():
        pytest.fail(f"{path} is missing: these tests need the shared/ directory beside the repository "
                    f"({REPO})", pytrace=False)
    return path


@pytest.fixture(scope="session")
def shared_streams() -> Path:
    """The real OpenZFS send streams (bz2) and reference dumps; see PROVENANCE.md there."""
    return shared_dir("streams")


@pytest.fixture(scope="session")
def zfs_pool():
    """Name of a fresh pool on a sparse file; starts zfs-fuse if needed, stops it if it did."""
    try:
        with zfsfuse.running_pool() as pool:
            yield pool.name
    except zfsfuse.HarnessError as err:
        pytest.fail(f"real ZFS unavailable: {err}", pytrace=False)


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path  # where it is mounted


_counter = itertools.count(1)


@pytest.fixture
def zfs_dataset(zfs_pool):
    """A fresh, mounted filesystem under the test pool, destroyed (with its children) after."""
    zfs = ZfsCli()
    name = f"{zfs_pool}/t{next(_counter)}"
    zfs.create(name)
    yield Dataset(name, Path(zfs.mountpoint(name)))
    if zfs.exists(name):
        for child in zfs.list_datasets(name, recursive=True):
            for snap in zfs.snapshots(child):
                if zfs.userrefs(snap.name):  # zg-backup holds the last archived snapshot
                    zfs.release("zfsglacier", snap.name)
        zfs.destroy(name, recursive=True)
