"""zg-backup --replicate (`zfs send -R`, issue 11): a dataset and its tree as one stream per run.

The backup side runs on zfs-fuse too (it has -R and `zfs hold`); the restore needs `zfs receive -x`
(the source's mountpoint must not come along), which only OpenZFS has: on zfs-fuse zg-restore
refuses before it receives anything, and the round trip runs in the OpenZFS tier's guest."""

import io
import json
import subprocess
from pathlib import Path

import pytest

from zfsglacier.catalog.db import Catalog
from zfsglacier.errors import BrokenStreamError, ZfsError
from zfsglacier.format import archive, keys
from zfsglacier.services.backup import hold_tag
from zfsglacier.services.restore import check_tree
from zfsfuse import AdminZfs, kernel_zfs
from tests.helpers import assert_one_line_error
from tests.test_chains_zfs import env, run  # noqa: F401 (env is a fixture)
from tests.test_filters_zfs import fill, tree_digest

pytestmark = pytest.mark.zfs
openzfs_only = pytest.mark.skipif(not kernel_zfs(), reason="needs kernel OpenZFS (make test-openzfs runs it in a guest)")
zfs_fuse_only = pytest.mark.skipif(kernel_zfs(), reason="zfs-fuse's refusal (OpenZFS has zfs receive -x)")


def backup(env, ds, *extra, code=0):
    return run(env, "backup", ds, env["dest"], "--key", env["pub"], "--replicate", *extra, code=code)


def rows(env):
    with Catalog(env["catalog"]) as cat:
        return sorted(cat.archives(env["dest"]), key=lambda a: a.uploaded)


def make_tree(zfs, root):
    """root, root/a, root/a/b, root/c: files in each."""
    for child in ("a", "a/b", "c"):
        zfs.create(f"{root.name}/{child}")
    for i, d in enumerate(("", "a", "a/b", "c")):
        fill(Path(zfs.mountpoint(f"{root.name}/{d}" if d else root.name)), 50 + i, n=1)


def tree_refs(zfs, root, snap):
    """Dataset -> holds on its @snap, for every dataset of the tree that has it."""
    return {d: zfs.userrefs(f"{d}@{snap}") for d in zfs.list_datasets(root) if zfs.exists(f"{d}@{snap}")}


def test_replicate_backs_up_the_tree_as_one_chain_and_holds_its_bases_everywhere(zfs_dataset, env):  # noqa: F811
    zfs = AdminZfs()
    root = zfs_dataset
    make_tree(zfs, root)
    p = backup(env, root.name, "--snapshot", "s0")
    assert "full" in p.stdout.decode()
    fill(Path(zfs.mountpoint(f"{root.name}/a/b")), 60, n=1)
    zfs.create(f"{root.name}/d")  # a dataset new since s0 travels in the incremental, as a full of its own
    plan = backup(env, root.name, "--snapshot", "auto", "--dry-run").stdout.decode()
    assert "incremental (from s0)" in plan, plan
    if kernel_zfs():  # zfs-fuse has no `written`: its incrementals are an upper bound ("at most")
        assert "to send (" in plan and "at most" not in plan and "size not known" not in plan, plan
    p = backup(env, root.name, "--snapshot", "s1")
    assert "incremental from s0" in p.stdout.decode()
    got = rows(env)
    assert [a.dataset for a in got] == [root.name, root.name]  # one archive per run, for the tree
    assert all("-R" in a.meta.send_flags and a.stream == "compound" for a in got)
    assert (got[1].fromguid, got[1].toguid) == (zfs.guid(f"{root.name}@s0"), zfs.guid(f"{root.name}@s1"))
    # the next incremental's base is held in every dataset of the tree; the old one in none
    assert list(tree_refs(zfs, root.name, "s1").values()) == [1] * 5
    assert list(tree_refs(zfs, root.name, "s0").values()) == [0] * 4
    # a dataset of the tree is restored with the tree: zg-restore says so
    p = run(env, "restore", env["dest"], f"{root.name}/a/b@s1", f"{root.name}-back", "--key", env["key"], code=11)
    assert_one_line_error(p, 11, "inside the replicated tree", f"restore {root.name}@s1", "TARGET/a/b")
    # and zg-ls shows one chain, of the tree
    listing = run(env, "ls", env["dest"]).stdout.decode()
    assert f"chain 1: {root.name} and every dataset under it (zfs send -R), 2 archives" in listing, listing


def test_replicate_refuses_a_tree_whose_datasets_lack_the_snapshot(zfs_dataset, env):  # noqa: F811
    zfs = AdminZfs()
    make_tree(zfs, zfs_dataset)
    subprocess.run(["zfs", "snapshot", f"{zfs_dataset.name}@lonely"], check=True)  # not -r
    p = backup(env, zfs_dataset.name, code=2)
    assert_one_line_error(p, 2, f"{zfs_dataset.name}/a", "@lonely", "leave", "snapshot -r")
    assert rows(env) == []


def test_replicate_and_single_chains_do_not_mix(zfs_dataset, env):  # noqa: F811
    zfs = AdminZfs()
    make_tree(zfs, zfs_dataset)
    ds = zfs_dataset.name
    run(env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "one")
    p = backup(env, ds, "--snapshot", "two", "--dry-run")  # a replication chain starts with a full
    assert "full (--replicate: a replication chain starts with a full" in p.stdout.decode(), p.stdout
    assert "zfs send -L -e -R" in p.stdout.decode() or "zfs send -R" in p.stdout.decode(), p.stdout
    assert "full" in backup(env, ds, "--snapshot", "two").stdout.decode()
    fill(zfs_dataset.path, 70, n=1)
    subprocess.run(["zfs", "snapshot", "-r", f"{ds}@three"], check=True)
    p = run(env, "backup", ds, env["dest"], "--key", env["pub"], code=2)  # without --replicate on a -R chain
    assert_one_line_error(p, 2, "replication stream", "--replicate", "--full-every 1")
    p = run(env, "backup", "-r", ds, env["dest"], "--key", env["pub"], "--replicate", code=2)
    assert_one_line_error(p, 2, "drop -r")
    assert len(rows(env)) == 2


@zfs_fuse_only
def test_restore_of_a_replicated_tree_is_refused_where_zfs_receive_has_no_x(zfs_dataset, zfs_pool, env):  # noqa: F811
    zfs = AdminZfs()
    make_tree(zfs, zfs_dataset)
    backup(env, zfs_dataset.name, "--snapshot", "s0")
    target = f"{zfs_pool}/back"
    p = run(env, "restore", env["dest"], f"{zfs_dataset.name}@s0", target, "--key", env["key"], code=13)
    assert_one_line_error(p, 13, "zfs receive -x", "mountpoint", "OpenZFS")
    assert not zfs.exists(target)


def test_check_tree_finds_a_dataset_missing_after_receive(zfs_dataset, zfs_pool, env):  # noqa: F811
    """The guid check of every dataset a replication archive lists, against a real received tree."""
    zfs = AdminZfs()
    make_tree(zfs, zfs_dataset)
    backup(env, zfs_dataset.name, "--snapshot", "s0")
    tree = {d[len(zfs_dataset.name):].lstrip("/"): str(zfs.guid(f"{d}@s0"))
            for d in zfs.list_datasets(zfs_dataset.name)}
    target = f"{zfs_pool}/by-hand"
    send = subprocess.run(["zfs", "send", "-R", f"{zfs_dataset.name}@s0"], capture_output=True, check=True).stdout
    subprocess.run(["zfs", "receive", "-u", target], input=send, check=True)
    a = rows(env)[0]
    check_tree(zfs, a, target, tree)  # whole: passes
    subprocess.run(["zfs", "destroy", "-r", f"{target}/a/b"], check=True)
    with pytest.raises(ZfsError, match=f"{target}/a/b has no snapshot with guid {tree['a/b']}"):
        check_tree(zfs, a, target, tree)
    with pytest.raises(ZfsError, match="did not come back whole"):
        check_tree(zfs, a, target, {**tree, "a": "12345"})
    zfs.destroy(target, recursive=True)
    assert json.loads(json.dumps(tree)) == tree  # what the private metadata carries: strings, not 64-bit ints

    # the writer's check too: a -R stream must end a substream at every snapshot of the tree
    guids = {int(g) for g in tree.values()}
    declared = (int(tree[""]), 0)
    pw = [keys.Passphrase(b"tree", log_n=10)]
    archive.encrypt(io.BytesIO(send), io.BytesIO(), pw, declared=declared, tree=guids)  # whole: fine
    with pytest.raises(BrokenStreamError, match="lacks the snapshot guids 12345 of its tree"):
        archive.encrypt(io.BytesIO(send), io.BytesIO(), pw, declared=declared, tree=guids | {12345})
    with pytest.raises(BrokenStreamError, match="as declared"):
        archive.encrypt(io.BytesIO(send), io.BytesIO(), pw, declared=(int(tree["a"]) + 1, 0), tree=guids)


@openzfs_only
def test_replicated_tree_restores_whole_without_the_source_mountpoint(zfs_dataset, zfs_pool, env, tmp_path):  # noqa: F811
    zfs = AdminZfs()
    root = zfs_dataset
    make_tree(zfs, root)
    subprocess.run(["zfs", "set", "compression=lz4", f"{root.name}/a"], check=True)  # a property that travels
    want = {}
    backup(env, root.name, "--snapshot", "s0")
    want["s0"] = tree_digest(root.path)
    fill(Path(zfs.mountpoint(f"{root.name}/a/b")), 80, n=1)
    zfs.create(f"{root.name}/d")
    fill(Path(zfs.mountpoint(f"{root.name}/d")), 81, n=1)
    subprocess.run(["zfs", "clone", f"{root.name}/a@s0", f"{root.name}/e"], check=True)  # a clone inside the tree
    fill(Path(zfs.mountpoint(f"{root.name}/e")), 82, n=1)
    plan = backup(env, root.name, "--snapshot", "auto", "--dry-run").stdout.decode()
    assert "incremental (from s0)" in plan and "at most" not in plan and "to send (" in plan, plan  # over the tree
    p = backup(env, root.name, "--snapshot", "s1")
    assert "incremental from s0" in p.stdout.decode()
    want["s1"] = tree_digest(root.path)
    with pytest.raises(subprocess.CalledProcessError):  # the base is held in the children too
        subprocess.run(["zfs", "destroy", f"{root.name}/a/b@s1"], check=True, capture_output=True)

    target = f"{zfs_pool}/tree-back"
    run(env, "restore", env["dest"], f"{root.name}@s1", target, "--key", env["key"])
    names = [d[len(target):] for d in zfs.list_datasets(target)]
    assert names == ["", "/a", "/a/b", "/c", "/d", "/e"], names
    assert tree_digest(zfs.mountpoint(target)) == want["s1"]
    assert zfs.get(f"{target}/e", "origin")["origin"] == f"{target}/a@s0"  # the clone came back as a clone
    for d in ("", "/a", "/a/b", "/c", "/d", "/e"):
        assert zfs.guid(f"{target}{d}@s1") == zfs.guid(f"{root.name}{d}@s1")
        assert zfs.mountpoint(f"{target}{d}") is not None  # every dataset of the tree is mounted
    assert zfs.get(f"{target}/a", "compression")["compression"] == "lz4"
    assert zfs.get(target, "mountpoint")["mountpoint"] != zfs.get(root.name, "mountpoint")["mountpoint"]
    zfs.destroy(f"{target}/e", recursive=True)  # clones first: their origins are in the tree
    zfs.destroy(target, recursive=True)
    # an older snapshot of the tree restores too
    run(env, "restore", env["dest"], f"{root.name}@s0", target, "--key", env["key"])
    assert tree_digest(zfs.mountpoint(target)) == want["s0"]
    zfs.destroy(target, recursive=True)
    zfs.release(hold_tag(env["dest"]), f"{root.name}/e@s1")  # the clone goes before the fixture's destroy -r
    zfs.destroy(f"{root.name}/e", recursive=True)
