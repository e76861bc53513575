"""ZfsCli on a real pool (zfs-fuse), cross-checked with the stream parser."""

import io
import os
from pathlib import Path

import pytest

from zfsglacier.errors import BrokenStreamError, DatasetNotFoundError, ZfsError
from zfsfuse import AdminZfs
from zfsglacier.zfs import ZfsCli, open_zfs
from zfsglacier.format.zfsstream import BEGIN_RECORD_SIZE, iter_records, parse_begin, verify_stream

pytestmark = pytest.mark.zfs


@pytest.fixture
def zfs():
    return AdminZfs()


@pytest.fixture
def target(zfs, zfs_dataset):
    """A name beside the test dataset for receives; destroyed afterwards if it was made."""
    name = zfs_dataset.name + "-copy"
    yield name
    if zfs.exists(name):
        zfs.destroy(name, recursive=True)


def write_files(path, seed):
    """A small tree whose contents depend on seed: text, a 1 MiB random file, a subdir."""
    (path / "notes.txt").write_text(f"version {seed}\n" * 100)
    (path / "random.bin").write_bytes(os.urandom(1 << 20))
    (path / "sub").mkdir(exist_ok=True)
    (path / "sub" / f"only-{seed}").write_bytes(bytes([seed]) * 5000)


def tree(path):
    """{relative path: bytes} of every file under path."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def read_all(proc) -> bytes:
    data = proc.stdout.read()
    proc.check()
    return data


def receive_bytes(zfs, data, target, **kw):
    proc = zfs.receive(target, **kw)
    try:
        proc.stdin.write(data)
    except BrokenPipeError:  # zfs gave up early; check() says why
        pass
    proc.check()


def test_open_zfs_picks_pyzfs_where_the_kernel_runs_zfs_and_the_cli_elsewhere(monkeypatch):
    from zfsfuse import kernel_zfs
    monkeypatch.delenv("ZG_ZFS", raising=False)  # the OpenZFS tier runs the suite once with each forced
    from zfsglacier.zfs import PyzfsBackend
    try:
        import libzfs_core  # noqa: F401 - ships with OpenZFS (python3-pyzfs), not on PyPI
        pyzfs = True
    except ImportError:
        pyzfs = False
    # zfs-fuse: no /dev/zfs, no libzfs_core; the OpenZFS tier's guest: both
    assert type(open_zfs()) is (PyzfsBackend if kernel_zfs() and pyzfs else ZfsCli)


def test_snapshot_guid_is_exact_and_matches_the_stream(zfs, zfs_dataset):
    write_files(zfs_dataset.path, 1)
    snap = zfs.snapshot(zfs_dataset.name + "@one")
    assert snap.name == zfs_dataset.name + "@one" and snap.guid == zfs.guid(snap.name)
    data = read_all(zfs.send(snap.name))
    ident = parse_begin(data[:BEGIN_RECORD_SIZE])
    assert (ident.toguid, ident.fromguid, ident.toname) == (snap.guid, 0, snap.name)
    assert ident.header_type == "plain" and ident.creation_time == snap.creation
    summary = verify_stream(io.BytesIO(data))  # zfs-fuse streams: DRR_END checksum only
    assert summary.end_checksums == 1 and summary.total_bytes == len(data)
    assert summary.payload_bytes["WRITE"] >= 1 << 20


def test_snapshots_listed_oldest_first_with_exact_guids(zfs, zfs_dataset):
    names = ["zz", "aa", "mm"]  # same second, names out of order: txg order must win
    taken = [zfs.snapshot(f"{zfs_dataset.name}@{n}") for n in names]
    zfs.create(zfs_dataset.name + "/child")
    zfs.snapshot(zfs_dataset.name + "/child@zz")  # a child's snapshot is not listed
    listed = zfs.snapshots(zfs_dataset.name)
    assert [s.short for s in listed] == names
    assert listed == taken
    assert [s.guid for s in listed] == [zfs.guid(s.name) for s in taken]
    assert listed[0].createtxg < listed[1].createtxg < listed[2].createtxg
    assert zfs.list_datasets(zfs_dataset.name) == [zfs_dataset.name, zfs_dataset.name + "/child"]
    assert zfs.list_datasets(zfs_dataset.name, recursive=False) == [zfs_dataset.name]


def test_full_then_incremental_send_receive(zfs, zfs_dataset, target):
    src = zfs_dataset.path
    write_files(src, 1)
    s1 = zfs.snapshot(zfs_dataset.name + "@s1")
    first = tree(src)
    write_files(src, 2)
    (src / "sub" / "only-1").unlink()
    s2 = zfs.snapshot(zfs_dataset.name + "@s2")
    second = tree(src)

    receive_bytes(zfs, read_all(zfs.send(s1.name)), target)
    assert tree(Path(zfs.mountpoint(target))) == first
    assert [s.guid for s in zfs.snapshots(target)] == [s1.guid]  # a received snapshot keeps its guid

    incr = read_all(zfs.send(s2.name, from_snap=s1.name))
    ident = parse_begin(incr)
    assert ident.incremental and (ident.fromguid, ident.toguid) == (s1.guid, s2.guid)
    # reading the copy updated atime: like any mounted target, it needs -F
    with pytest.raises(ZfsError, match="modified"):
        receive_bytes(zfs, incr, target)
    receive_bytes(zfs, incr, target, force=True)
    zfs.unmount(target)  # zfs-fuse keeps serving the pages read before the receive until then
    zfs.mount(target)
    assert tree(Path(zfs.mountpoint(target))) == second
    assert [s.guid for s in zfs.snapshots(target)] == [s1.guid, s2.guid]


def test_intermediates_make_a_compound_stream_the_parser_follows(zfs, zfs_dataset, target):
    snaps = []
    for i in range(1, 4):
        write_files(zfs_dataset.path, i)
        snaps.append(zfs.snapshot(f"{zfs_dataset.name}@i{i}"))
    data = read_all(zfs.send(snaps[2].name, from_snap=snaps[0].name, intermediates=True))
    summary = verify_stream(io.BytesIO(data))
    assert summary.identity.header_type == "compound"
    assert [(b.fromguid, b.toguid) for b in summary.begins[1:]] == [
        (snaps[0].guid, snaps[1].guid), (snaps[1].guid, snaps[2].guid)]
    receive_bytes(zfs, read_all(zfs.send(snaps[0].name)), target, mount=False)
    receive_bytes(zfs, data, target, mount=False)
    assert [s.guid for s in zfs.snapshots(target)] == [s.guid for s in snaps]
    assert zfs.mountpoint(target) is None


def test_hold_release_userrefs(zfs, zfs_dataset):
    snap = zfs.snapshot(zfs_dataset.name + "@held").name
    assert zfs.userrefs(snap) == 0
    zfs.hold("zg-test", snap)
    assert zfs.userrefs(snap) == 1
    with pytest.raises(ZfsError, match="tag already exists"):
        zfs.hold("zg-test", snap)
    with pytest.raises(ZfsError, match="busy|being held"):  # zfs-fuse | OpenZFS 2.3
        zfs.destroy(snap)  # a held snapshot cannot go
    zfs.hold("other", snap)
    assert zfs.userrefs(snap) == 2
    zfs.release("zg-test", snap)
    zfs.release("other", snap)
    assert zfs.userrefs(snap) == 0
    with pytest.raises(ZfsError, match="no such tag"):
        zfs.release("zg-test", snap)
    zfs.destroy(snap)
    assert not zfs.exists(snap)


def test_errors_carry_zfs_own_message(zfs, zfs_pool, zfs_dataset):
    missing = f"{zfs_pool}/no-such-dataset"
    assert zfs.exists(zfs_dataset.name) and not zfs.exists(missing)
    assert not zfs.exists(zfs_dataset.name + "@nope")
    for call in (lambda: zfs.guid(missing), lambda: zfs.snapshots(missing),
                 lambda: zfs.snapshot(missing + "@x"), lambda: zfs.destroy(missing),
                 lambda: read_all(zfs.send(zfs_dataset.name + "@nope"))):
        with pytest.raises(DatasetNotFoundError) as err:
            call()
        message = str(err.value)
        assert "does not exist" in message and "\n" not in message
        assert err.value.exit_code == 11
    with pytest.raises(ZfsError, match="already exists"):
        zfs.create(zfs_dataset.name)
    with pytest.raises(ZfsError) as err:  # multi-line message and usage text: one line
        read_all(zfs.send(zfs_dataset.name))
    assert "\n" not in str(err.value) and "usage" not in str(err.value)


def _corruptions(full: bytes):
    write = next(rec for rec, _ in iter_records(io.BytesIO(full)) if rec.type == "WRITE")
    flipped = bytearray(full)
    flipped[write.offset + BEGIN_RECORD_SIZE + 100] ^= 0x01
    return {"truncated": full[: len(full) // 2], "flipped": bytes(flipped)}


def test_corrupt_streams_fail_and_leave_nothing(zfs, zfs_dataset, target):
    write_files(zfs_dataset.path, 1)
    s1 = zfs.snapshot(zfs_dataset.name + "@s1")
    full = read_all(zfs.send(s1.name))
    expected = {"truncated": "invalid backup stream|incomplete stream", "flipped": "checksum mismatch"}  # fuse | 2.3
    for kind, data in _corruptions(full).items():
        with pytest.raises(BrokenStreamError):
            verify_stream(io.BytesIO(data))  # our own check sees it too
        with pytest.raises(ZfsError, match=expected[kind]):
            receive_bytes(zfs, data, target)
        assert not zfs.exists(target), kind

    # the same for an incremental onto an existing copy: no new snapshot appears
    receive_bytes(zfs, full, target, mount=False)
    write_files(zfs_dataset.path, 2)
    s2 = zfs.snapshot(zfs_dataset.name + "@s2")
    incr = read_all(zfs.send(s2.name, from_snap=s1.name))
    for kind, data in _corruptions(incr).items():
        with pytest.raises(ZfsError, match=expected[kind]):
            receive_bytes(zfs, data, target)
        assert [s.guid for s in zfs.snapshots(target)] == [s1.guid], kind


def test_rename_and_destroy_mounted_filesystems(zfs, zfs_dataset):
    child = zfs_dataset.name + "/a"
    zfs.create(child)
    (Path(zfs.mountpoint(child)) / "f").write_text("kept")
    zfs.snapshot(child + "@s")
    zfs.rename(child, zfs_dataset.name + "/b")  # mounted: zfs-fuse says "busy" unless unmounted
    assert not zfs.exists(child)
    moved = zfs.mountpoint(zfs_dataset.name + "/b")
    assert moved is not None and (Path(moved) / "f").read_text() == "kept"
    zfs.rename(zfs_dataset.name + "/b@s", zfs_dataset.name + "/b@t")
    assert [s.short for s in zfs.snapshots(zfs_dataset.name + "/b")] == ["t"]
    with pytest.raises(ZfsError, match="has children"):
        zfs.destroy(zfs_dataset.name + "/b")
    zfs.destroy(zfs_dataset.name + "/b", recursive=True)
    assert zfs.list_datasets(zfs_dataset.name) == [zfs_dataset.name]
