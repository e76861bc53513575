"""Issue 11 on the ZFS users run: what only OpenZFS has (bookmarks, native encryption and raw
sends, feature flags, -L/-e/-c), and pyzfs against the CLI backend.  These run in the OpenZFS
tier's guest (`make test-openzfs`, tests/openzfs/); on zfs-fuse they skip, saying so."""

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from zfsglacier import errors
from zfsglacier.catalog.db import Catalog
from zfsglacier.zfs import SendFlags, ZfsCli, open_zfs
from zfsfuse import AdminZfs, kernel_zfs
from tests.helpers import assert_one_line_error, file_destination
from tests.test_chains_zfs import env, run  # noqa: F401 (env is a fixture)
from tests.test_filters_zfs import fill, tree_digest

pytestmark = pytest.mark.zfs
openzfs_only = pytest.mark.skipif(not kernel_zfs(), reason="needs kernel OpenZFS (make test-openzfs runs it in a guest)")
zfs_fuse_only = pytest.mark.skipif(kernel_zfs(), reason="the pool v23 side of a round trip: zfs-fuse's")
FUSE_CHAIN = Path(__file__).resolve().parent / "data" / "zfs-fuse-chain"


def backup(env, ds, snap, *extra, code=0):
    return run(env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", snap, *extra, code=code)


def restore(env, spec, target, *extra, code=0):
    return run(env, "restore", env["dest"], spec, target, "--key", env["key"], *extra, code=code)


def rows(env):
    with Catalog(env["catalog"]) as cat:
        return sorted(cat.archives(env["dest"]), key=lambda a: a.uploaded)


def zg_bookmarks(zfs, ds):
    return [b.name for b in zfs.bookmarks(ds) if "#zg-" in b.name]


@pytest.fixture
def sparse_pool(tmp_path):
    """make(name, *zpool_create_options) -> a second pool on a sparse file, destroyed after."""
    made = []

    def make(name, *options):
        img = tmp_path / f"{name}.img"
        with open(img, "wb"):
            pass
        os.truncate(img, 256 << 20)
        subprocess.run(["zpool", "create", *options, "-m", str(tmp_path / f"{name}-mnt"), name, str(img)],
                       check=True, capture_output=True)
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["zpool", "destroy", "-f", name], capture_output=True)


# --- pyzfs and the CLI: the same answers ---------------------------------------------------------

@openzfs_only
@pytest.mark.parametrize("backend", ["cli", "pyzfs"])
def test_backend_snapshot_hold_bookmark_send_receive(zfs_dataset, zfs_pool, backend):
    admin = AdminZfs()
    zfs = open_zfs(backend)
    assert type(zfs).__name__ == ("ZfsCli" if backend == "cli" else "PyzfsBackend")
    ds = zfs_dataset.name
    fill(zfs_dataset.path, 1, n=2)
    s1 = zfs.snapshot(f"{ds}@one")
    assert s1.guid == admin.guid(f"{ds}@one")
    zfs.hold("zg-test", s1.name)
    assert admin.userrefs(s1.name) == 1
    zfs.release("zg-test", s1.name)
    assert admin.userrefs(s1.name) == 0
    zfs.bookmark(s1.name, f"{ds}#one-mark")
    zfs.bookmark(s1.name, f"{ds}#one-mark")  # the same bookmark again: fine
    marks = zfs.bookmarks(ds)
    assert [(b.name, b.guid, b.createtxg) for b in marks] == [(f"{ds}#one-mark", s1.guid, s1.createtxg)]
    assert zfs.bookmarks(ds) == ZfsCli().bookmarks(ds)  # pyzfs's lzc_get_bookmarks and `zfs get` agree
    fill(zfs_dataset.path, 2, n=2)
    s2 = zfs.snapshot(f"{ds}@two")
    admin.destroy(s1.name)  # only the bookmark is left of @one

    target = f"{zfs_pool}/recv-{backend}"
    full = zfs.send(s2.name)
    recv = zfs.receive(target)
    recv.stdin.write(full.stdout.read())
    full.check()
    recv.check()
    assert [s.guid for s in zfs.snapshots(target)] == [s2.guid]
    assert tree_digest(admin.mountpoint(target)) == tree_digest(zfs_dataset.path)

    # an incremental from the bookmark, by both backends, is the stream from @one to @two
    incr = zfs.send(s2.name, from_snap=f"{ds}#one-mark", flags=SendFlags(large_blocks=True, embedded=True))
    data = incr.stdout.read()
    incr.check()
    from zfsglacier.format.zfsstream import parse_begin
    begin = parse_begin(data)
    assert (begin.toguid, begin.fromguid) == (s2.guid, s1.guid)
    with pytest.raises(errors.ZfsError, match="bookmark"):
        zfs.send(s2.name, from_snap=f"{ds}#one-mark", intermediates=True)
    admin.destroy(target, recursive=True)


@openzfs_only
def test_forced_backend_that_cannot_load_is_an_error(monkeypatch):
    monkeypatch.setenv("ZG_ZFS", "nonsense")
    with pytest.raises(errors.ZfsError, match="ZG_ZFS=nonsense"):
        open_zfs()
    monkeypatch.setenv("ZG_ZFS", "cli")
    assert type(open_zfs()) is ZfsCli


# --- bookmarks as bases -------------------------------------------------------------------------

@openzfs_only
def test_bookmark_chain_survives_destroyed_snapshots(zfs_dataset, zfs_pool, env):  # noqa: F811
    """sanoid-style rotation: every archived snapshot is destroyed; the bookmark carries the chain."""
    zfs = AdminZfs()
    ds = zfs_dataset.name
    want = {}
    for i in range(3):
        fill(zfs_dataset.path, 20 + i, n=2)
        p = backup(env, ds, f"s{i}")
        out = p.stdout.decode()
        assert ("full" if i == 0 else f"incremental from s{i - 1}") in out, out
        want[f"s{i}"] = tree_digest(zfs_dataset.path)
        assert zg_bookmarks(zfs, ds) == [f"{ds}#zg-{bm_tag(env)}-s{i}"]  # one per destination: the base
        assert zfs.userrefs(f"{ds}@s{i}") == 0  # no hold where bookmarks exist: the snapshot may go
        zfs.destroy(f"{ds}@s{i}")  # and it goes
    plan = run(env, "backup", ds, env["dest"], "--key", env["pub"], "--snapshot", "auto", "--dry-run").stdout
    assert b"kept as bookmark" in plan
    # ZFS estimates an incremental from a bookmark: a size, not an upper bound
    assert b"to send (" in plan and b"at most" not in plan and b"size not known" not in plan, plan
    assert [a.fromguid == 0 for a in rows(env)] == [True, False, False]
    target = f"{zfs_pool}/from-bookmarks"
    restore(env, f"{ds}@s2", target)
    assert tree_digest(zfs.mountpoint(target)) == want["s2"]
    zfs.destroy(target, recursive=True)


@openzfs_only
def test_each_destination_keeps_its_own_bookmark_of_a_destroyed_base(zfs_dataset, zfs_pool, env, tmp_path):  # noqa: F811
    """Two destinations whose base is the same destroyed snapshot: each keeps its own bookmark of
    it, so that one moving on (and destroying its bookmark) never takes the other's chain along.
    A third destination's backup is what makes zg-backup look at both while neither moves."""
    zfs = AdminZfs()
    ds = zfs_dataset.name
    a, b, c = env["dest"], file_destination(tmp_path / "b"), file_destination(tmp_path / "c")

    def backup_to(dest, snap=None):  # snap: take it first; else the newest snapshot
        return run(env, "backup", ds, dest, "--key", env["pub"], *(["--snapshot", snap] if snap else [])).stdout.decode()

    def own(dest):
        tag = hashlib.sha256(dest.encode()).hexdigest()[:8]
        return {m.name: m.guid for m in zfs.bookmarks(ds) if m.name.startswith(f"{ds}#zg-{tag}-")}

    fill(zfs_dataset.path, 40, n=2)
    backup_to(a, "s0")
    assert "full" in backup_to(b)
    s0 = zfs.guid(f"{ds}@s0")
    zfs.destroy(f"{ds}@s0")
    fill(zfs_dataset.path, 41, n=2)
    backup_to(c, "s1")
    assert list(own(a).values()) == [s0] and list(own(b).values()) == [s0], zfs.bookmarks(ds)
    assert "incremental from s0" in backup_to(b)  # b moves on (to s1): its bookmark of s0 goes
    assert list(own(a).values()) == [s0], zfs.bookmarks(ds)
    fill(zfs_dataset.path, 42, n=2)
    assert "incremental from s0" in backup_to(a, "s2")
    want = tree_digest(zfs_dataset.path)
    target = f"{zfs_pool}/two-dests"
    restore(env, f"{ds}@s2", target)
    assert tree_digest(zfs.mountpoint(target)) == want
    zfs.destroy(target, recursive=True)


@openzfs_only
def test_hold_option_holds_even_with_bookmarks(zfs_dataset, env):  # noqa: F811
    zfs = AdminZfs()
    fill(zfs_dataset.path, 30, n=1)
    backup(env, zfs_dataset.name, "h0", "--hold")
    assert zfs.userrefs(f"{zfs_dataset.name}@h0") == 1
    fill(zfs_dataset.path, 31, n=1)
    backup(env, zfs_dataset.name, "h1", "--hold")
    assert (zfs.userrefs(f"{zfs_dataset.name}@h0"), zfs.userrefs(f"{zfs_dataset.name}@h1")) == (0, 1)


def bm_tag(env):
    import hashlib
    return hashlib.sha256(env["dest"].encode()).hexdigest()[:8]


# --- raw sends of encrypted datasets --------------------------------------------------------------

def encrypted(zfs, name, keyfile):
    """A dataset with native encryption; a hex key, not a passphrase: PBKDF2's 350,000 rounds take
    ~10 s per create or load-key under emulation."""
    keyfile.write_text(os.urandom(32).hex())
    zfs.create(name, {"encryption": "on", "keyformat": "hex", "keylocation": f"file://{keyfile}"})
    return Path(zfs.mountpoint(name))


def lock(zfs, name):
    zfs.unmount(name)
    subprocess.run(["zfs", "unload-key", name], check=True, capture_output=True)


def unlock(zfs, name, keyfile=None):
    subprocess.run(["zfs", "load-key", *(["-L", f"file://{keyfile}"] if keyfile else []), name],
                   check=True, capture_output=True)
    zfs.mount(name)


@openzfs_only
def test_raw_chain_of_a_locked_encrypted_dataset(zfs_dataset, zfs_pool, env, tmp_path):  # noqa: F811
    zfs = AdminZfs()
    keyfile = tmp_path / "zfs.key"
    ds = f"{zfs_dataset.name}/secret"
    path = encrypted(zfs, ds, keyfile)
    want = {}
    for i in range(2):
        fill(path, 40 + i, n=2)
        want[f"r{i}"] = tree_digest(path)
        lock(zfs, ds)  # the key is not loaded: only a raw send can read it
        p = backup(env, ds, f"r{i}")
        out, err = p.stdout.decode(), p.stderr.decode()
        assert ("full" if i == 0 else "incremental from r0") in out, out
        if i == 0:
            assert "backed up raw" in err and str(keyfile) in err and "away from this host" in err, err
        unlock(zfs, ds)
    archived = rows(env)
    assert all(a.meta.raw and a.meta.send == "-w" for a in archived)
    assert "raw" in archived[0].meta.feature_set

    target = f"{zfs_pool}/raw-restored"
    p = restore(env, f"{ds}@r1", target)
    note = p.stderr.decode()
    assert "stays encrypted and locked" in note and "zfs load-key" in note, note
    assert zfs.get(target, "keystatus")["keystatus"] == "unavailable"
    unlock(zfs, target, keyfile)  # the user's ZFS key, which zfsglacier never had
    assert tree_digest(zfs.mountpoint(target)) == want["r1"]
    zfs.destroy(target, recursive=True)


@openzfs_only
def test_unloaded_key_starts_a_raw_chain_instead_of_breaking_a_decrypted_one(zfs_dataset, env, tmp_path):  # noqa: F811
    zfs = AdminZfs()
    ds = f"{zfs_dataset.name}/secret2"
    path = encrypted(zfs, ds, tmp_path / "k2")
    fill(path, 50, n=1)
    backup(env, ds, "d0")  # key loaded: a decrypted send, zfsglacier's encryption only
    assert not rows(env)[0].meta.raw
    fill(path, 51, n=1)
    zfs.snapshot(f"{ds}@d1")
    lock(zfs, ds)
    out = run(env, "backup", ds, env["dest"], "--key", env["pub"]).stdout.decode()
    assert "full" in out, out
    assert rows(env)[-1].meta.raw and rows(env)[-1].fromguid == 0


# --- feature flags -----------------------------------------------------------------------------

@openzfs_only
def test_full_sends_use_pool_features_and_the_chain_keeps_them(zfs_dataset, env):  # noqa: F811
    fill(zfs_dataset.path, 60, n=1)
    backup(env, zfs_dataset.name, "f0")
    fill(zfs_dataset.path, 61, n=1)
    backup(env, zfs_dataset.name, "f1", "--compressed-send")  # an incremental keeps its full's flags
    full, incr = rows(env)
    assert full.meta.send == "-L -e" and incr.meta.send == "-L -e"


def _sent_digest(zfs, snap, base=None, flags=SendFlags()):
    proc = zfs.send(snap, from_snap=base, flags=flags)
    h = hashlib.sha256()
    while chunk := proc.stdout.read(1 << 20):
        h.update(chunk)
    proc.check()
    return h.hexdigest()


@openzfs_only
def test_a_snapshot_sends_the_same_bytes_every_time(zfs_dataset):
    """What a resumed backup stands on (SPEC section 11; on zfs-fuse too, tests/test_resume_zfs.py):
    one snapshot, sent twice with the same flags, through this session's backend, the same bytes.
    (A resume does not trust it: other bytes are refused and the archive starts anew.)"""
    zfs = open_zfs()
    fill(zfs_dataset.path, 90, n=2)
    zfs.snapshot(f"{zfs_dataset.name}@d0")
    fill(zfs_dataset.path, 91, n=2)
    zfs.snapshot(f"{zfs_dataset.name}@d1")
    for base, flags in [(None, SendFlags()), (None, SendFlags(large_blocks=True, embedded=True, compressed=True)),
                        (f"{zfs_dataset.name}@d0", SendFlags(large_blocks=True, embedded=True)),
                        (None, SendFlags(props=True))]:
        first = _sent_digest(zfs, f"{zfs_dataset.name}@d1", base, flags)
        assert _sent_digest(zfs, f"{zfs_dataset.name}@d1", base, flags) == first, (base, flags)


@openzfs_only
def test_props_travel_with_the_chain_but_never_the_mountpoint(zfs_dataset, zfs_pool, env, tmp_path):  # noqa: F811
    zfs = AdminZfs()
    ds = zfs_dataset.name
    subprocess.run(["zfs", "set", "zg:label=kept", f"mountpoint={tmp_path / 'src-mnt'}", ds], check=True)
    path = Path(zfs.mountpoint(ds))
    fill(path, 80, n=1)
    backup(env, ds, "p0", "--props")
    fill(path, 81, n=1)
    want = tree_digest(path)
    backup(env, ds, "p1")  # the chain keeps its full's -p
    assert [(a.stream, "-p" in a.meta.send_flags) for a in rows(env)] == [("compound", True), ("compound", True)]
    target = f"{zfs_pool}/with-props"
    restore(env, f"{ds}@p1", target)
    assert zfs.get(target, "zg:label")["zg:label"] == "kept"
    assert zfs.mountpoint(target) != str(tmp_path / "src-mnt")  # the original's mount is left alone
    assert zfs.mountpoint(ds) == str(tmp_path / "src-mnt")
    assert tree_digest(zfs.mountpoint(target)) == want
    zfs.destroy(target, recursive=True)


@openzfs_only
def test_restore_refuses_a_pool_without_the_features_a_stream_needs(zfs_dataset, env, tmp_path,  # noqa: F811
                                                                     sparse_pool):
    zfs = AdminZfs()
    ds = f"{zfs_dataset.name}/secret3"
    path = encrypted(zfs, ds, tmp_path / "k3")
    fill(path, 70, n=1)
    backup(env, ds, "e0", "--raw")
    bare = sparse_pool(f"zgbare{os.getpid()}", "-d")  # no feature enabled: no encryption (a name of this
    # session: run.py runs one pytest per backend side by side in the guest)
    p = restore(env, f"{ds}@e0", f"{bare}/x", code=None)
    assert_one_line_error(p, errors.ZfsError.exit_code, "raw (pool feature encryption)", "zgbare")
    assert not zfs.exists(f"{bare}/x")


# --- round trips across versions ---------------------------------------------------------------

@openzfs_only
def test_a_chain_archived_on_zfs_fuse_restores_on_openzfs(zfs_pool, tmp_path):
    """tests/data/zfs-fuse-chain: a full and an incremental zg-backup made on zfs-fuse (pool v23),
    restored here from nothing but the store and the key: a catalog rebuild, then zg-restore."""
    import json
    import shutil
    expected = json.loads((FUSE_CHAIN / "expected.json").read_text())
    shutil.copytree(FUSE_CHAIN / "store", tmp_path / "store")
    env = {"ZG_CATALOG": str(tmp_path / "catalog.db")}
    key = tmp_path / "test.key"  # git keeps no 0600, and zfsglacier refuses a key others can read
    key.write_bytes((FUSE_CHAIN / "test.key").read_bytes())
    key.chmod(0o600)
    dest = f"file://{tmp_path / 'store'}"
    e = {"env": env}
    run(e, "catalog", "rebuild", dest, "--key", key)
    zfs = AdminZfs()
    for snap, files in expected["snapshots"].items():
        target = f"{zfs_pool}/from-v23-{snap}"
        run(e, "restore", dest, f"{expected['dataset']}@{snap}", target, "--key", key)
        assert tree_digest(zfs.mountpoint(target)) == files
        zfs.destroy(target, recursive=True)


@zfs_fuse_only
def test_an_openzfs_stream_is_refused_by_a_v23_pool_before_anything_is_received(zfs_pool, tmp_path, env,  # noqa: F811
                                                                                 openzfs_streams):
    """The reverse, where ZFS does not allow it: every OpenZFS 2.x stream vendored here needs
    system attributes (sa_spill: pool version 24), and this one large blocks.  zg-restore says
    which, naming the pool's version, before it thaws or receives anything."""
    import bz2
    stream = bz2.decompress((openzfs_streams / "zstream" / "little-endian-long-payloads.zsend.bz2").read_bytes())
    from tests.helpers import zg
    sealed = zg("encrypt", env["pub"], input=stream, check=True).stdout
    up = zg("upload", env["dest"], input=sealed, env=env["env"])
    assert up.returncode == 0, up.stderr
    run(env, "catalog", "rebuild", env["dest"], "--key", env["key"])  # the names are private: the key reads them
    p = run(env, "restore", env["dest"], "test@long-payloads", f"{zfs_pool}/from-openzfs", "--key", env["key"],
            code=None)
    assert_one_line_error(p, errors.ZfsError.exit_code, "sa_spill (needs pool version 24", "is 23",
                          "large_blocks (pool feature large_blocks)")
    assert not AdminZfs().exists(f"{zfs_pool}/from-openzfs")
