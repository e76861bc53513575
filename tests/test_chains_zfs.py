"""Issue 4 on real ZFS: zg-backup chains, zg-restore of any snapshot, lost catalog, renames, bad input."""

import json
import os
import re
from pathlib import Path

import pytest

from zfsglacier import errors
from zfsglacier.catalog.db import Catalog
from zfsfuse import AdminZfs
from tests.helpers import assert_one_line_error, file_destination, zg
from tests.test_filters_zfs import fill, tree_digest

pytestmark = pytest.mark.zfs


ALL_DESTINATIONS = pytest.mark.parametrize("destination", ["file", "s3", "rgw", "vault"], indirect=True)


@pytest.fixture
def env(tmp_path, request):
    """Keys, a catalog path and a destination (file:// unless the test is parametrized), private to one test."""
    if "destination" in request.fixturenames:
        dest, dest_env = request.getfixturevalue("destination")
    else:
        dest, dest_env = file_destination(tmp_path / "store"), {"ZG_CATALOG": str(tmp_path / "catalog.db")}
    key, pub = tmp_path / "offsite.key", tmp_path / "offsite.pub"
    pub.write_text(zg("keygen", "-o", key, check=True).stdout.decode())
    return dict(key=key, pub=pub, dest=dest, catalog=dest_env["ZG_CATALOG"], env=dest_env)


def run(env, cmd, *args, code=0):
    p = zg(cmd, *args, env=env["env"])
    if code is not None:
        assert p.returncode == code, (cmd, args, p.stderr.decode())
    return p


def make_chain(zfs, ds, env, n_incr=3):
    """A full and n incrementals through zg-backup; returns {snapshot: file digests}."""
    want = {}
    for i in range(n_incr + 1):
        fill(ds.path, 10 + i, n=2)
        if i == 2:
            (ds.path / "file10-0.dat").unlink()
        snap = f"s{i}"
        p = run(env, "backup", ds.name, env["dest"], "--key", env["pub"], "--snapshot", snap)
        assert ("full" if i == 0 else f"incremental from s{i - 1}") in p.stdout.decode()
        want[snap] = tree_digest(ds.path)
    return want


def restored(zfs, target):
    return tree_digest(zfs.mountpoint(target))


@ALL_DESTINATIONS
def test_chain_restore_middle_and_newest(zfs_dataset, zfs_pool, destination, env):
    zfs = AdminZfs()
    want = make_chain(zfs, zfs_dataset, env)
    listing = run(env, "ls", env["dest"], zfs_dataset.name).stdout.decode()
    assert "chain 1" in listing and listing.count("-> incr") == 3
    with Catalog(env["catalog"]) as cat:
        rows = cat.archives(env["dest"])
        assert [r.snapshot for r in rows] == ["s0", "s1", "s2", "s3"]
        assert all(r.toguid == zfs.guid(f"{zfs_dataset.name}@{r.snapshot}") for r in rows)
    dry = run(env, "restore", env["dest"], f"{zfs_dataset.name}@s2", "x", "--dry-run").stdout.decode()
    assert "3 archives" in dry and "@s0" in dry and "@s3" not in dry
    for snap in ("s1", "s3"):
        target = f"{zfs_pool}/r-{snap}"
        run(env, "restore", env["dest"], f"{zfs_dataset.name}@{snap}", target, "--key", env["key"])
        assert restored(zfs, target) == want[snap]
        assert zfs.guid(f"{target}@{snap}") == zfs.guid(f"{zfs_dataset.name}@{snap}")
        zfs.destroy(target, recursive=True)
    # the newest archived snapshot stays held (bookmarked, on OpenZFS) as the next incremental's base
    from zfsglacier.services.backup import has_bookmarks
    if has_bookmarks(zfs, zfs_dataset.name):
        assert [b.name.rsplit("-", 1)[1] for b in zfs.bookmarks(zfs_dataset.name)] == ["s3"]
    else:
        assert zfs.userrefs(f"{zfs_dataset.name}@s3") == 1 and zfs.userrefs(f"{zfs_dataset.name}@s2") == 0


@pytest.mark.parametrize("destination", ["file", "s3"], indirect=True)
def test_lost_catalog_rebuilt_from_the_destination(zfs_dataset, zfs_pool, destination, env):
    zfs = AdminZfs()
    want = make_chain(zfs, zfs_dataset, env, n_incr=2)
    os.unlink(env["catalog"])
    p = run(env, "restore", env["dest"], f"{zfs_dataset.name}@s2", f"{zfs_pool}/lost", "--key", env["key"],
            code=errors.CatalogError.exit_code)
    assert "zg-catalog rebuild" in p.stderr.decode()
    keyless = run(env, "catalog", "rebuild", env["dest"]).stdout.decode()
    assert "3 archives" in keyless and "0 with names" in keyless
    os.unlink(env["catalog"])
    named = run(env, "catalog", "rebuild", env["dest"], "--key", env["key"]).stdout.decode()
    assert "3 with names" in named
    target = f"{zfs_pool}/lost"
    run(env, "restore", env["dest"], f"{zfs_dataset.name}@s2", target, "--key", env["key"])
    assert restored(zfs, target) == want["s2"]
    zfs.destroy(target, recursive=True)
    # and the next backup continues the chain instead of starting over
    fill(zfs_dataset.path, 99, n=1)
    p = run(env, "backup", zfs_dataset.name, env["dest"], "--key", env["pub"], "--snapshot", "s3")
    assert "incremental from s2" in p.stdout.decode()


def test_renames_do_not_confuse_the_chain(zfs_dataset, zfs_pool, env):
    zfs = AdminZfs()
    make_chain(zfs, zfs_dataset, env, n_incr=1)
    renamed = f"{zfs_pool}/renamed-{os.getpid()}"
    zfs.rename(zfs_dataset.name, renamed)
    zfs.rename(f"{renamed}@s1", f"{renamed}@monday")
    try:
        fill(Path(zfs.mountpoint(renamed)), 50, n=1)
        p = run(env, "backup", renamed, env["dest"], "--key", env["pub"], "--snapshot", "s2")
        assert "incremental from monday" in p.stdout.decode()
        want = tree_digest(zfs.mountpoint(renamed))
        target = f"{zfs_pool}/from-renamed"
        run(env, "restore", env["dest"], f"{renamed}@s2", target, "--key", env["key"])
        assert restored(zfs, target) == want
        zfs.destroy(target, recursive=True)
    finally:
        zfs.rename(renamed, zfs_dataset.name)


def test_bad_input_is_refused_and_destroys_nothing(zfs_dataset, zfs_pool, env, tmp_path):
    zfs = AdminZfs()
    make_chain(zfs, zfs_dataset, env, n_incr=2)
    ds = zfs_dataset.name
    other_key = tmp_path / "other.key"
    zg("keygen", "-o", other_key, check=True)
    # unknown snapshot
    assert_one_line_error(run(env, "restore", env["dest"], f"{ds}@nope", f"{zfs_pool}/x", "--key", env["key"],
                              code=None), errors.NotFoundError.exit_code, "no archive of")
    # wrong key: refused before anything is thawed or received
    assert_one_line_error(run(env, "restore", env["dest"], f"{ds}@s2", f"{zfs_pool}/x", "--key", other_key,
                              code=None), errors.NoMatchingKeyError.exit_code, "wrong key")
    assert not zfs.exists(f"{zfs_pool}/x")
    # existing target: untouched
    before = tree_digest(zfs_dataset.path)
    existing = f"{zfs_pool}/existing"
    zfs.create(existing)
    (Path(zfs.mountpoint(existing)) / "keep.txt").write_text("precious")
    assert_one_line_error(run(env, "restore", env["dest"], f"{ds}@s2", existing, "--key", env["key"], code=None),
                          errors.TargetExistsError.exit_code, "already exists")
    assert (Path(zfs.mountpoint(existing)) / "keep.txt").read_text() == "precious"
    zfs.destroy(existing, recursive=True)
    # a chain with a missing link
    with Catalog(env["catalog"]) as cat:
        middle = [r for r in cat.archives(env["dest"]) if r.snapshot == "s1"][0]
    os.unlink(env["dest"][len("file://"):] + f"/{middle.id}.zg")
    with Catalog(env["catalog"]) as cat:
        cat.mark_deleted(env["dest"], middle.id)
    assert_one_line_error(run(env, "restore", env["dest"], f"{ds}@s2", f"{zfs_pool}/x", "--key", env["key"],
                              code=None), errors.NotFoundError.exit_code, "broken")
    assert not zfs.exists(f"{zfs_pool}/x")
    assert tree_digest(zfs_dataset.path) == before


def test_a_swapped_archive_is_never_received(zfs_dataset, zfs_pool, env):
    """An archive replaced in the store by another valid archive of the same key (here s1's bytes
    under s0's id, the store's own checksums consistent) is refused by the snapshot guid in its
    header before zfs receive starts."""
    zfs = AdminZfs()
    make_chain(zfs, zfs_dataset, env, n_incr=1)
    ds, store = zfs_dataset.name, Path(env["dest"][len("file://"):])
    with Catalog(env["catalog"]) as cat:
        rows = {r.snapshot: r for r in cat.archives(env["dest"])}
    for suffix in (".zg", ".zg.json"):
        (store / f"{rows['s1'].id}{suffix}").replace(store / f"{rows['s0'].id}{suffix}")
    side = store / f"{rows['s0'].id}.zg.json"  # and the store's own record made to match
    side.write_text(json.dumps(dict(json.loads(side.read_text()), id=rows["s0"].id)))
    target = f"{zfs_pool}/swapped"
    assert_one_line_error(run(env, "restore", env["dest"], f"{ds}@s0", target, "--key", env["key"], code=None),
                          errors.IntegrityError.exit_code, "not receiving it")
    assert not zfs.exists(target)


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_interrupted_restore_resumes(zfs_dataset, zfs_pool, destination, env, aws):
    """kill -9 while the second archive is being fetched; a second run continues and ends right."""
    import signal
    import subprocess
    import sys
    import time
    from tests.helpers import BIN
    from tests.servers.faultproxy import FaultProxy
    zfs = AdminZfs()
    want = make_chain(zfs, zfs_dataset, env, n_incr=2)
    with Catalog(env["catalog"]) as cat:
        rows = cat.archives(env["dest"])
    target = f"{zfs_pool}/interrupted"
    with FaultProxy(aws.s3_url, stall_seconds=60) as proxy:
        seen = []  # restore first reads every archive's header (s0, s1, s2), then receives s0, s1, ...

        def receiving_second(req):
            if re.match(rf"^GET \S*{rows[2].id}", req.request_line):
                seen.append(req)
            return bool(seen) and bool(re.match(rf"^GET \S*{rows[1].id}", req.request_line))
        proxy.inject("stall", when=receiving_second)
        run_env = {**os.environ, **env["env"], "AWS_ENDPOINT_URL_S3": proxy.url}
        proc = subprocess.Popen([sys.executable, str(BIN / "zg-restore"), env["dest"], f"{zfs_dataset.name}@s2",
                                 target, "--key", str(env["key"])], env=run_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not proxy.injected.get("stall") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.injected.get("stall"), "the restore never reached the second archive"
        assert zfs.guid(f"{target}@s0") == rows[0].toguid  # the first archive is in
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proxy.clear()
    time.sleep(0.5)  # the orphaned `zfs receive` sees its input end and gives up
    assert not zfs.exists(f"{target}@s1")
    p = run(env, "restore", env["dest"], f"{zfs_dataset.name}@s2", target, "--key", env["key"])
    assert "1 of them already there" in p.stdout.decode()
    assert restored(zfs, target) == want["s2"]


def test_intermediates_archive_brings_every_snapshot_in_between(zfs_dataset, zfs_pool, env):
    zfs = AdminZfs()
    fill(zfs_dataset.path, 70, n=1)
    run(env, "backup", zfs_dataset.name, env["dest"], "--key", env["pub"], "--snapshot", "base")
    for snap in ("mid", "top"):
        fill(zfs_dataset.path, 71 if snap == "mid" else 72, n=1)
        zfs.snapshot(f"{zfs_dataset.name}@{snap}")
    want = tree_digest(zfs_dataset.path)
    p = run(env, "backup", zfs_dataset.name, env["dest"], "--key", env["pub"], "--intermediates")
    assert "top  incremental from base" in p.stdout.decode()
    target = f"{zfs_pool}/with-mid"
    run(env, "restore", env["dest"], f"{zfs_dataset.name}@top", target, "--key", env["key"])
    assert restored(zfs, target) == want
    assert [s.short for s in zfs.snapshots(target)] == ["base", "mid", "top"]
    assert zfs.guid(f"{target}@mid") == zfs.guid(f"{zfs_dataset.name}@mid")


def test_makefile_runbook_targets(zfs_dataset, zfs_pool, env):
    """make backup / make verify / make restore call the tools with the runbook's variables."""
    import subprocess
    from tests.helpers import REPO
    zfs = AdminZfs()
    fill(zfs_dataset.path, 80, n=1)
    make_env = {**os.environ, **env["env"]}
    common = [f"DEST={env['dest']}", f"KEY={env['key']}", f"PUB={env['pub']}"]

    def make(*args):
        p = subprocess.run(["make", "-s", "-C", str(REPO), *args, *common], env=make_env, capture_output=True)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout.decode()

    make("backup", f"DATASET={zfs_dataset.name}")
    snap = zfs.snapshots(zfs_dataset.name)[-1].short
    assert snap.startswith("zg-")
    assert "ok      " in make("verify")
    target = f"{zfs_pool}/from-make"
    make("restore", f"SNAP={zfs_dataset.name}@{snap}", f"TARGET={target}")
    assert restored(zfs, target) == tree_digest(zfs_dataset.path)
    p = subprocess.run(["make", "-s", "-C", str(REPO), "restore", *common], env=make_env, capture_output=True)
    assert p.returncode != 0 and b"set SNAP=" in p.stderr


def test_rm_refuses_to_break_a_chain(zfs_dataset, zfs_pool, env):
    zfs = AdminZfs()
    make_chain(zfs, zfs_dataset, env, n_incr=1)
    with Catalog(env["catalog"]) as cat:
        full, incr = cat.archives(env["dest"])
    p = run(env, "rm", env["dest"], full.id, code=None)
    assert_one_line_error(p, errors.UsageError.exit_code, "unrestorable")
    run(env, "rm", env["dest"], incr.id)  # the newest incremental: nothing depends on it
    run(env, "rm", env["dest"], full.id)  # now the full is no one's base
    with Catalog(env["catalog"]) as cat:
        assert cat.archives(env["dest"]) == []
