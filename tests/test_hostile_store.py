"""The store is hostile: a provider that holds the archives (no key) and relabels, swaps, replays,
hides or edits objects and their metadata.  Each case is either detected with a clear error and a
documented exit code before any `zfs receive` (the target is never created), or shown harmless.
Real zfs-fuse, on every store: file://, S3 on moto and on Ceph RGW, the vault stand-in (whose listing is an
inventory job and whose catalog copy needs a retrieval job: rebuild() runs again until both are done)."""

import base64
import dataclasses
import json
import shutil
import time
from pathlib import Path

import boto3
import pytest

from zfsglacier import errors
from zfsglacier.catalog.db import Catalog
from zfsglacier.stores import open_store
from zfsglacier.stores.vault import describe, parse_description
from zfsfuse import AdminZfs
from tests.test_chains_zfs import ALL_DESTINATIONS, env, make_chain, restored, run  # noqa: F401 (fixture)

pytestmark = pytest.mark.zfs
LISTABLE = ALL_DESTINATIONS  # a vault lists through an inventory job: rebuild() waits for it


class FileProvider:
    """Whoever can write the directory: data files and sidecars."""

    def __init__(self, dest, aws):
        self.dir = Path(dest[len("file://"):])

    def side(self, i):
        return json.loads((self.dir / f"{i}.zg.json").read_text())

    def put_side(self, i, side):
        (self.dir / f"{i}.zg.json").write_text(json.dumps(side))

    def metadata(self, i):
        return self.side(i)["metadata"]

    def set_metadata(self, i, meta):
        self.put_side(i, dict(self.side(i), metadata=meta))

    def swap_bytes(self, a, b):
        """Exchange the bytes (and the store's own checksums of them) of a and b; metadata stays."""
        sa, sb = self.side(a), self.side(b)
        tmp = self.dir / "tmp"
        shutil.move(self.dir / f"{a}.zg", tmp)
        shutil.move(self.dir / f"{b}.zg", self.dir / f"{a}.zg")
        shutil.move(tmp, self.dir / f"{b}.zg")
        keys = ("size", "sha256", "parts", "part_size")
        self.put_side(a, dict(sa, **{k: sb[k] for k in keys}))
        self.put_side(b, dict(sb, **{k: sa[k] for k in keys}))

    def copy(self, a, new_id):
        shutil.copy(self.dir / f"{a}.zg", self.dir / f"{new_id}.zg")
        self.put_side(new_id, dict(self.side(a), id=new_id))

    def hide(self, i):
        (self.dir / f"{i}.zg").unlink()
        (self.dir / f"{i}.zg.json").unlink()


class S3Provider:
    """The bucket's owner: objects re-put with consistent checksums, any metadata."""

    def __init__(self, dest, url):
        bucket, _, self.prefix = dest[len("s3://"):].partition("/")
        self.bucket, self.c = bucket, boto3.client("s3", endpoint_url=url)

    def key(self, i):
        return f"{self.prefix}/{i}.zg"

    def _get(self, i):
        head = self.c.head_object(Bucket=self.bucket, Key=self.key(i))
        if head.get("StorageClass", "STANDARD") in ("GLACIER", "DEEP_ARCHIVE"):
            try:
                self.c.restore_object(Bucket=self.bucket, Key=self.key(i), RestoreRequest={"Days": 1})
            except self.c.exceptions.ClientError:
                pass  # a server without RestoreObject (RGW) serves the class at once
        body = self.c.get_object(Bucket=self.bucket, Key=self.key(i))["Body"].read()
        return body, head["Metadata"], head.get("StorageClass", "STANDARD")

    def _put(self, i, body, meta, cls):
        self.c.put_object(Bucket=self.bucket, Key=self.key(i), Body=body, Metadata=meta, StorageClass=cls,
                          ChecksumAlgorithm="SHA256")

    def metadata(self, i):
        return self._get(i)[1]

    def set_metadata(self, i, meta):
        body, _, cls = self._get(i)
        self._put(i, body, meta, cls)

    def swap_bytes(self, a, b):
        (ba, ma, ca), (bb, mb, cb) = self._get(a), self._get(b)
        self._put(a, bb, ma, ca)
        self._put(b, ba, mb, cb)

    def copy(self, a, new_id):
        body, meta, cls = self._get(a)
        self._put(new_id, body, meta, cls)

    def hide(self, i):
        self.c.delete_object(Bucket=self.bucket, Key=self.key(i))


class VaultProvider:
    """The vault's keeper (the stand-in's own records): descriptions rewritten, archives exchanged,
    copied or dropped under their ids."""

    def __init__(self, dest, aws):
        self.vault, self.server = aws.vault._vault(dest[len("glacier://"):]), aws.vault

    def metadata(self, i):
        return parse_description(self.vault.archives[i].description)

    def set_metadata(self, i, meta):
        with self.server._lock:
            self.vault.archives[i].description = describe(meta)

    def copy(self, a, new_id):
        with self.server._lock:
            self.vault.archives[new_id] = dataclasses.replace(self.vault.archives[a], id=new_id)

    def hide(self, i):
        with self.server._lock:
            del self.vault.archives[i]

    def swap_bytes(self, a, b):
        with self.server._lock:
            xa, xb = self.vault.archives[a], self.vault.archives[b]
            for f in ("size", "tree_hash", "leaves", "path"):
                va, vb = getattr(xa, f), getattr(xb, f)
                setattr(xa, f, vb)
                setattr(xb, f, va)


def provider(env, request):
    kind = request.node.callspec.params["destination"]
    if kind == "rgw":
        return S3Provider(env["dest"], request.getfixturevalue("rgw").url)
    aws = request.getfixturevalue("aws") if kind != "file" else None
    if kind == "s3":
        return S3Provider(env["dest"], aws.s3_url)
    return {"file": FileProvider, "vault": VaultProvider}[kind](env["dest"], aws)


def rebuild(env, *args, code=0, fresh=False):
    """zg-catalog rebuild DEST --key KEY; on a vault it answers 75 while its inventory job (and then
    the catalog copy's retrieval) runs: the stand-in's jobs take a fraction of a second.  A vault
    lists from its newest finished inventory: ``fresh`` asks for a new one first (what a user
    does a day later, when AWS has made its next one)."""
    if fresh and env["dest"].startswith("glacier://"):
        open_store(env["dest"]).request_inventory()
        time.sleep(0.6)
    for _ in range(10):
        p = run(env, "catalog", "rebuild", env["dest"], "--key", env["key"], *args, code=None)
        if p.returncode != errors.RestorePendingError.exit_code:
            break
        time.sleep(0.6)
    assert p.returncode == code, p.stderr.decode()
    return p


def archive_ids(env, dataset):
    with Catalog(env["catalog"]) as cat:
        return {r.snapshot: r.id for r in cat.archives(env["dest"]) if r.dataset == dataset}


def restores_right(zfs, env, spec, target, want):
    """zg-restore of ``spec`` into ``target`` brings back exactly ``want`` (then the target goes)."""
    run(env, "restore", env["dest"], spec, target, "--key", env["key"])
    assert restored(zfs, target) == want
    zfs.destroy(target, recursive=True)


def refused_before_receive(zfs, env, spec, target, code, *words):
    p = run(env, "restore", env["dest"], spec, target, "--key", env["key"], code=code)
    err = p.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert not zfs.exists(target), "zfs receive must never have started"
    return err


@ALL_DESTINATIONS
def test_swapped_bytes_under_the_same_ids_are_refused(zfs_dataset, zfs_pool, destination, env, request):
    """The store exchanges two archives' bytes (with its own checksums to match): the catalog is
    intact, the store's checks pass, and restore still refuses, before zfs receive."""
    zfs = AdminZfs()
    make_chain(zfs, zfs_dataset, env, n_incr=1)
    ids = archive_ids(env, zfs_dataset.name)
    provider(env, request).swap_bytes(ids["s0"], ids["s1"])
    # a vault's retrieval job names the archive's size: one that is not the size uploaded is refused
    # by the store itself, as it is read; elsewhere the header the archive carries gives it away
    vault = request.node.callspec.params["destination"] == "vault"
    refused_before_receive(zfs, env, f"{zfs_dataset.name}@s1", f"{zfs_pool}/swapped",
                           errors.IntegrityError.exit_code, "were uploaded" if vault else "not receiving it")


@LISTABLE
def test_relabelled_metadata_and_a_rebuilt_catalog_cannot_restore_the_wrong_snapshot(
        zfs_dataset, zfs_pool, destination, env, request):
    """The attack of the issue: metadata (the header copy with the names, and the guids) moved
    between objects, the catalog lost and rebuilt with the key, DS@s1 asked for."""
    zfs = AdminZfs()
    want = make_chain(zfs, zfs_dataset, env, n_incr=1)
    ids = archive_ids(env, zfs_dataset.name)
    prov = provider(env, request)
    m0, m1 = prov.metadata(ids["s0"]), prov.metadata(ids["s1"])
    prov.set_metadata(ids["s0"], m1)
    prov.set_metadata(ids["s1"], m0)
    Path(env["catalog"]).unlink()
    rebuild(env)
    for snap in ("s0", "s1"):
        refused_before_receive(zfs, env, f"{zfs_dataset.name}@{snap}", f"{zfs_pool}/relabelled-{snap}",
                               errors.IntegrityError.exit_code, "not receiving it")
    # only the names moved (the guids left alone): the identity now comes from the same copy, so
    # the archive still refuses to be what its copy says
    prov.set_metadata(ids["s0"], dict(m0, **{"zg-header": m1["zg-header"]}))
    prov.set_metadata(ids["s1"], dict(m1, **{"zg-header": m0["zg-header"]}))
    Path(env["catalog"]).unlink()
    rebuild(env, fresh=True)
    with Catalog(env["catalog"]) as cat:
        rows = {r.id: r for r in cat.archives(env["dest"])}
    assert rows[ids["s0"]].identity == "header" and rows[ids["s0"]].snapshot == "s1"
    refused_before_receive(zfs, env, f"{zfs_dataset.name}@s1", f"{zfs_pool}/names-only",
                           errors.IntegrityError.exit_code, "not receiving it")
    # put back, rebuilt: the same archives restore the right files
    prov.set_metadata(ids["s0"], m0)
    prov.set_metadata(ids["s1"], m1)
    Path(env["catalog"]).unlink()
    rebuild(env, fresh=True)
    restores_right(zfs, env, f"{zfs_dataset.name}@s1", f"{zfs_pool}/honest", want["s1"])


@LISTABLE
def test_replayed_object_under_a_new_id_is_refused(zfs_dataset, zfs_pool, destination, env, request):
    """An old archive copied under a new id with a newer archive's metadata: detected."""
    zfs = AdminZfs()
    make_chain(zfs, zfs_dataset, env, n_incr=1)
    ids = archive_ids(env, zfs_dataset.name)
    prov = provider(env, request)
    replay = "29991231T235959Z-0badc0de"
    prov.copy(ids["s0"], replay)
    prov.set_metadata(replay, prov.metadata(ids["s1"]))
    prov.hide(ids["s1"])
    Path(env["catalog"]).unlink()
    p = rebuild(env, code=errors.IntegrityError.exit_code)
    assert ids["s1"] in p.stderr.decode() and "hidden or deleted" in p.stderr.decode()
    # the replay claims to be s1 (its header copy is s1's, authenticated), but its bytes are s0's
    refused_before_receive(zfs, env, f"{zfs_dataset.name}@s1", f"{zfs_pool}/replayed",
                           errors.IntegrityError.exit_code, replay, "not receiving it")


@LISTABLE
def test_hidden_newest_archive_is_named_not_silently_skipped(zfs_dataset, zfs_pool, destination, env, request):
    zfs = AdminZfs()
    want = make_chain(zfs, zfs_dataset, env, n_incr=2)
    ids = archive_ids(env, zfs_dataset.name)
    provider(env, request).hide(ids["s2"])
    Path(env["catalog"]).unlink()
    p = rebuild(env, code=errors.IntegrityError.exit_code)
    err = p.stderr.decode()
    assert f"{zfs_dataset.name}@s2" in err and "hidden or deleted" in err and "recorded as missing" in err
    refused_before_receive(zfs, env, f"{zfs_dataset.name}@s2", f"{zfs_pool}/hidden",
                           errors.NotFoundError.exit_code, "hidden or deleted")
    # what the store still holds is intact and restores (harmless for the rest of the chain)
    restores_right(zfs, env, f"{zfs_dataset.name}@s1", f"{zfs_pool}/rest", want["s1"])


@LISTABLE
def test_edited_public_metadata_is_reported_or_harmless(zfs_dataset, zfs_pool, destination, env, request):
    zfs = AdminZfs()
    want = make_chain(zfs, zfs_dataset, env, n_incr=1)
    ids = archive_ids(env, zfs_dataset.name)
    prov = provider(env, request)
    m0, m1 = prov.metadata(ids["s0"]), prov.metadata(ids["s1"])
    # guids that disagree with the authenticated header: reported, the header believed
    prov.set_metadata(ids["s1"], dict(m1, **{"zg-toguid": "12345", "zg-fromguid": "0",
                                            "zg-compression": "none:0", "zg-created": "1"}))
    # a field not of its documented form: that object reported and skipped, the rest recorded
    junk = "29991231T235959Z-00000001"
    prov.copy(ids["s0"], junk)
    prov.set_metadata(junk, dict(m0, **{"zg-toguid": "twelve"}))
    Path(env["catalog"]).unlink()
    p = rebuild(env)
    err = p.stderr.decode()
    assert "skipped object" in err and junk in err and "twelve" in err
    assert "authenticated header does not" in err and ids["s1"] in err
    with Catalog(env["catalog"]) as cat:
        row = cat.get(env["dest"], ids["s1"])
    assert row.toguid == zfs.guid(f"{zfs_dataset.name}@s1") and row.identity == "header"
    restores_right(zfs, env, f"{zfs_dataset.name}@s1", f"{zfs_pool}/edited", want["s1"])
    # without a key, the store's word is all there is: recorded as such, and restore still checks
    Path(env["catalog"]).unlink()
    for _ in range(10):
        if run(env, "catalog", "rebuild", env["dest"], code=None).returncode == 0:
            break
        time.sleep(0.6)
    with Catalog(env["catalog"]) as cat:
        assert cat.get(env["dest"], ids["s1"]).identity == "metadata"
    copy = base64.b64decode(m1["zg-header"])
    assert copy[:8] == b"ZGLACIER"
