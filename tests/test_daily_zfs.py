"""Issue 9 on real ZFS: daily operation loses nothing (restores that never roll back local work,
holds per destination, locks, clean failure)."""

from pathlib import Path

import pytest

from zfsglacier import errors
from zfsfuse import AdminZfs
from tests.helpers import assert_one_line_error, file_destination
from tests.test_chains_zfs import env, make_chain, run  # noqa: F401 (env is a fixture)
from tests.test_filters_zfs import tree_digest

pytestmark = pytest.mark.zfs


def test_restore_continues_only_where_nothing_would_be_lost(zfs_dataset, zfs_pool, env):  # noqa: F811
    zfs = AdminZfs()
    want = make_chain(zfs, zfs_dataset, env, n_incr=3)
    ds, key = zfs_dataset.name, env["key"]

    def restore(snap, target, *extra, code=0):
        return run(env, "restore", env["dest"], f"{ds}@{snap}", target, "--key", key, *extra, code=code)

    # an untouched earlier restore is continued, incrementally, without --force
    clean = f"{zfs_pool}/clean"
    restore("s1", clean)
    p = restore("s3", clean)
    assert "2 of them already there" in p.stdout.decode()
    assert tree_digest(zfs.mountpoint(clean)) == want["s3"]

    # a file written there since is never rolled back without --force; the message says why
    worked = f"{zfs_pool}/worked"
    restore("s1", worked)
    mine = Path(zfs.mountpoint(worked)) / "my-work.txt"
    mine.write_text("written after the restore")
    err = assert_one_line_error(restore("s3", worked, code=None), errors.TargetExistsError.exit_code,
                                "local changes", "written since @s1", "--force")
    assert mine.read_text() == "written after the restore"
    assert [s.short for s in zfs.snapshots(worked)] == ["s0", "s1"]  # no probe snapshot left behind
    assert "Traceback" not in err
    restore("s3", worked, "--force")  # asked for: the local change is discarded
    assert tree_digest(zfs.mountpoint(worked)) == want["s3"]

    # a snapshot the user took there would be destroyed by the receive: refused too
    snapped = f"{zfs_pool}/snapped"
    restore("s1", snapped)
    zfs.snapshot(f"{snapped}@mine")
    assert_one_line_error(restore("s3", snapped, code=None), errors.TargetExistsError.exit_code,
                          "has snapshot mine", "would destroy it")
    assert [s.short for s in zfs.snapshots(snapped)] == ["s0", "s1", "mine"]

    # a dataset that holds none of the chain: refused, untouched
    other = f"{zfs_pool}/other"
    zfs.create(other)
    (Path(zfs.mountpoint(other)) / "keep.txt").write_text("precious")
    assert_one_line_error(restore("s3", other, code=None), errors.TargetExistsError.exit_code, "already exists")
    assert (Path(zfs.mountpoint(other)) / "keep.txt").read_text() == "precious"
    for t in (clean, worked, snapped, other):
        zfs.destroy(t, recursive=True)


def test_changes_since_sees_attribute_changes_at_once(zfs_dataset):
    """zfs-fuse has no `written`: the probe send tells an untouched dataset from a changed one.
    OpenZFS's `written` counts only what a txg has synced: changes_since syncs first, or a change
    made a second ago would read as none."""
    from zfsfuse import kernel_zfs
    zfs = AdminZfs()
    (zfs_dataset.path / "a.txt").write_text("a")
    snap = zfs.snapshot(f"{zfs_dataset.name}@base")
    assert zfs.changes_since(zfs_dataset.name, snap) is None
    (zfs_dataset.path / "a.txt").chmod(0o600)
    assert ("written since @base" if kernel_zfs() else "attributes changed") in zfs.changes_since(
        zfs_dataset.name, snap)
    (zfs_dataset.path / "b.txt").write_text("b")
    assert ("written since @base" if kernel_zfs() else "files were written") in zfs.changes_since(
        zfs_dataset.name, snap)
    assert [s.short for s in zfs.snapshots(zfs_dataset.name)] == ["base"]


def holds_of(snap, *tags):
    """Which of ``tags`` hold ``snap`` (zfs-fuse has no `zfs holds`: a release that must fail tells)."""
    import subprocess
    held = []
    for tag in tags:
        if subprocess.run(["zfs", "release", tag, snap], capture_output=True).returncode == 0:
            held.append(tag)
            subprocess.run(["zfs", "hold", tag, snap], check=True)
    return held


def test_holds_are_per_destination_and_follow_the_chains(zfs_dataset, zfs_pool, env, tmp_path):  # noqa: F811
    from zfsglacier.services.backup import LEGACY_HOLD_TAG, has_bookmarks, hold_tag
    zfs = AdminZfs()
    ds, pub = zfs_dataset.name, env["pub"]
    disk, offsite = env["dest"], file_destination(tmp_path / "offsite")
    tags = (hold_tag(disk), hold_tag(offsite), LEGACY_HOLD_TAG)
    (zfs_dataset.path / "a").write_text("a")
    zfs.snapshot(f"{ds}@s0")
    zfs.hold(LEGACY_HOLD_TAG, f"{ds}@s0")  # as zfsglacier < 0.4 left it
    # where the pool has bookmarks (OpenZFS) holds are chosen (--hold) and then stay chosen
    hold = ["--hold"] if has_bookmarks(zfs, ds) else []
    run(env, "backup", ds, disk, "--key", pub, *hold)
    run(env, "backup", ds, offsite, "--key", pub, *hold)
    assert holds_of(f"{ds}@s0", *tags) == [tags[0], tags[1]]  # the old single tag is migrated away
    (zfs_dataset.path / "b").write_text("b")
    run(env, "backup", ds, disk, "--key", pub, "--snapshot", "s1")
    # the backup to disk moved disk's hold only: offsite's next base stays held
    assert holds_of(f"{ds}@s0", *tags) == [tags[1]]
    assert holds_of(f"{ds}@s1", *tags) == [tags[0]]
    p = zg_ls_holds(env, offsite)
    assert f"{ds}@s0" in p and "next base" in p and "NOT HELD" not in p
    # a new chain (--full-every) releases the old tip
    run(env, "backup", ds, disk, "--key", pub, "--snapshot", "s2", "--full-every", "2")
    assert holds_of(f"{ds}@s1", *tags) == [] and holds_of(f"{ds}@s2", *tags) == [tags[0]]
    # zg-rm of the tip moves the hold back to the snapshot that is the next base again
    from zfsglacier.catalog.db import Catalog
    with Catalog(env["catalog"]) as cat:
        s2 = next(r for r in cat.archives(disk) if r.snapshot == "s2")
    run(env, "rm", disk, s2.id)
    assert holds_of(f"{ds}@s2", *tags) == [] and holds_of(f"{ds}@s1", *tags) == [tags[0]]
    # a base destroyed on the host is reported as such
    zfs.release(tags[1], f"{ds}@s0")
    zfs.destroy(f"{ds}@s0")
    (zfs_dataset.path / "c").write_text("c")
    p = run(env, "backup", ds, offsite, "--key", pub, "--snapshot", "s3", "--dry-run").stdout.decode()
    if hold:  # OpenZFS: s0 lives on as offsite's bookmark, and the chain goes on from it
        assert "incremental (from s0 (kept as bookmark" in p, p
    else:
        assert "full" in p and "s0, the last snapshot archived there, no longer exists on this host" in p
    p = zg_ls_holds(env, disk)
    line = next(x for x in p.splitlines() if f"{ds}@s1 " in x)
    assert "<- next base" in line and ("1 hold(s)" in line or tags[0] in line) and "NOT HELD" not in p


def zg_ls_holds(env, dest):
    return run(env, "ls", dest, "--holds").stdout.decode()


def test_a_partial_recursive_failure_has_its_own_code_and_a_summary(zfs_dataset, env):  # noqa: F811
    zfs = AdminZfs()
    ds = zfs_dataset.name
    for child in ("a", "b"):
        zfs.create(f"{ds}/{child}")
        (Path(zfs.mountpoint(f"{ds}/{child}")) / "f").write_text(child)
    zfs.snapshot(f"{ds}@s0")
    zfs.snapshot(f"{ds}/b@s0")  # a has no snapshot: its backup fails, the others go on
    p = run(env, "backup", "-r", ds, env["dest"], "--key", env["pub"], code=None)
    err = p.stderr.decode()
    assert p.returncode == errors.PartialFailureError.exit_code, err
    assert f"{ds}/a: " in err and f"1 of 3 datasets failed ({ds}/a" in err and "the other 2 are backed up" in err
    assert "Traceback" not in err
    assert p.stdout.decode().count("full") == 2


def test_a_missing_dataset_is_not_found(env):  # noqa: F811
    p = run(env, "backup", "nopool/nothing", env["dest"], "--key", env["pub"], code=None)
    assert_one_line_error(p, errors.NotFoundError.exit_code, "does not exist")


def test_one_run_per_dataset_and_destination(zfs_dataset, env, tmp_path):  # noqa: F811
    """Two runs at once upload once; a run that finds the lock taken changes nothing (no snapshot
    is taken) and says who holds it; --lock-wait waits; `--snapshot auto` names never collide."""
    import subprocess
    import sys
    import threading
    from zfsglacier.catalog.db import Catalog
    from zfsglacier.catalog.locks import Locks, lock_directory
    from tests.helpers import BIN
    zfs = AdminZfs()
    ds = zfs_dataset.name
    from tests.test_filters_zfs import fill
    fill(zfs_dataset.path, 3, n=3)
    zfs.snapshot(f"{ds}@s0")
    import os
    penv = {**os.environ, **env["env"]}
    procs = [subprocess.Popen([sys.executable, str(BIN / "zg-backup"), ds, env["dest"], "--key", str(env["pub"])],
                              env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [(p.wait(), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    with Catalog(env["catalog"]) as cat:
        assert len(cat.archives(env["dest"])) == 1, outs
    assert sorted(code for code, _, _ in outs)[0] == 0
    loser = [o for o in outs if "full" not in o[1]][0]
    assert (loser[0] == errors.LockedError.exit_code and "is locked by pid" in loser[2]) or "up to date" in loser[1], outs
    # the lock taken by someone else: refused before any snapshot is taken
    locks = Locks(lock_directory(env["catalog"]))
    locks.take(env["dest"], ds, "a test")
    before = [s.short for s in zfs.snapshots(ds)]
    p = run(env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "auto", code=None)
    assert_one_line_error(p, errors.LockedError.exit_code, "is locked by pid", "a test", "--lock-wait")
    assert [s.short for s in zfs.snapshots(ds)] == before
    threading.Timer(1.0, locks.release).start()
    run(env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "auto", "--lock-wait", "30")
    # two destinations in the same second: two distinct auto snapshots
    other = file_destination(tmp_path / "other")
    procs = [subprocess.Popen([sys.executable, str(BIN / "zg-backup"), ds, d, "--key", str(env["pub"]), "--snapshot",
                               "auto"], env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for d in (env["dest"], other)]
    codes = [(p.wait(), p.stderr.read().decode()) for p in procs]
    assert [c for c, _ in codes] == [0, 0], codes
    autos = [s.short for s in zfs.snapshots(ds) if s.short.startswith("zg-")]
    assert len(autos) == 3 and len(set(autos)) == 3


def test_a_lost_catalog_stops_the_backup_before_it_snapshots(zfs_dataset, env):  # noqa: F811
    import os
    zfs = AdminZfs()
    ds = zfs_dataset.name
    (zfs_dataset.path / "f").write_text("f")
    run(env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "s0")
    os.unlink(env["catalog"])
    p = run(env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "auto", code=None)
    assert_one_line_error(p, errors.CatalogError.exit_code, "no catalog at", "already holds archives",
                          "zg-catalog rebuild")
    assert [s.short for s in zfs.snapshots(ds)] == ["s0"]
    from zfsglacier.services.backup import hold_tag
    zfs.release(hold_tag(env["dest"]), f"{ds}@s0", missing_ok=True)  # the fixture finds tags through the
    # catalog, gone here (OpenZFS: no hold, a bookmark)


def test_writers_stop_before_zfs_and_output_errors_lose_nothing(zfs_dataset, zfs_pool, env, tmp_path):  # noqa: F811
    """A catalog that cannot be written stops zg-backup before it snapshots; a backup whose stdout
    is full is exit 8 with the archive recorded (the next run is up to date, no duplicate); a
    restore whose stdout is full has restored."""
    import os
    import subprocess
    import sys
    from zfsglacier.catalog.db import Catalog
    from tests.helpers import BIN
    from tests.test_daily_catalog import read_only
    zfs = AdminZfs()
    ds = zfs_dataset.name
    (zfs_dataset.path / "f").write_text("f")
    run(env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "s0")
    (zfs_dataset.path / "g").write_text("g")
    with Catalog(env["catalog"]) as cat:
        cat.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with read_only(tmp_path) as ro:
        ro_env = {**env, "env": {**env["env"], "ZG_CATALOG": str(ro / "catalog.db")}}
        p = run(ro_env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "auto", code=None)
        assert_one_line_error(p, errors.CatalogError.exit_code, "cannot be written")
        assert [s.short for s in zfs.snapshots(ds)] == ["s0"]
        p = run(ro_env, "ls", env["dest"])  # and readers still read it
        assert "chain 1" in p.stdout.decode()

    def into_full(cmd, *args):
        e = {**os.environ, **env["env"]}
        e.pop("ZG_DEBUG", None)
        with open("/dev/full", "wb") as out:
            return subprocess.run([sys.executable, str(BIN / f"zg-{cmd}"), *map(str, args)], stdout=out,
                                  stderr=subprocess.PIPE, env=e)
    p = into_full("backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "s1")
    assert p.returncode == errors.OutputClosedError.exit_code and b"cannot write standard output" in p.stderr
    assert "up to date" in run(env, "backup", ds, env["dest"], "--key", env["pub"]).stdout.decode()
    target = f"{zfs_pool}/full-out"
    p = into_full("restore", env["dest"], f"{ds}@s1", target, "--key", env["key"])
    assert p.returncode == errors.OutputClosedError.exit_code, p.stderr
    assert zfs.guid(f"{target}@s1") == zfs.guid(f"{ds}@s1")
    zfs.destroy(target, recursive=True)


def test_an_unmounted_disk_is_refused_before_anything_changes(zfs_dataset, env, tmp_path):  # noqa: F811
    import os
    zfs = AdminZfs()
    (zfs_dataset.path / "f").write_text("f")
    usb = tmp_path / "mnt" / "usb"  # the mount point of a disk that is not mounted: an empty directory
    usb.mkdir(parents=True)
    p = run(env, "backup", zfs_dataset.name, f"file://{usb}", "--key", env["pub"], "--snapshot", "auto", code=None)
    assert_one_line_error(p, errors.StoreError.exit_code, "is it mounted", "zg-init")
    assert os.listdir(usb) == [] and zfs.snapshots(zfs_dataset.name) == []
