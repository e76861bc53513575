"""Least privilege (issue 12, item 5): each role's policy from ``zg-doctor --policy ROLE`` is
attached to its own Ceph RGW user (PutUserPolicy, enforced by a real server), and zg-backup,
zg-restore and zg-prune do their work with only that user's keys; the backup credential can
neither read nor delete an archive, and what it writes over one is never what a restore reads."""

import json
import os

import boto3
import botocore.exceptions
import pytest

from tests.helpers import aws_env, zg
from tests.test_filters_zfs import fill, tree_digest
from zfsfuse import AdminZfs
from zfsglacier.catalog.db import Catalog
from zfsglacier.stores.s3_policy import policy

PREFIX = "fleet/host1"


def _refused(call, *codes):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        call()
    assert err.value.response["Error"]["Code"] in (codes or ("AccessDenied",)), err.value.response["Error"]


def _versioned(url, tmp_path, prefix, host, extra=""):
    """A new versioned bucket (its owner's client) and the environment of a destination "site" in it."""
    bucket = f"zg-versions-{os.urandom(4).hex()}"
    with aws_env():
        admin = boto3.client("s3", endpoint_url=url)
        admin.create_bucket(Bucket=bucket)
        admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    config = tmp_path / "config.toml"
    config.write_text(f'[destinations.site]\nurl = "s3://{bucket}/{prefix}"\nhost = "{host}"\nendpoint = "{url}"\n'
                      f'storage_class = "STANDARD"\n{extra}')
    return admin, bucket, {"ZG_CONFIG": str(config), "ZG_CATALOG": str(tmp_path / "catalog.db")}


def _site(rgw, tmp_path):
    """A versioned bucket, a destination in it, a key pair, and one RGW user per role, each with
    the policy zg-doctor prints for it."""
    admin, bucket, env = _versioned(rgw.url, tmp_path, "fleet", "host1", 'part_size = "5M"\n')
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    pub.write_text(zg("keygen", "-o", key, check=True, env=env).stdout.decode())
    roles = {}
    for role in ("backup", "restore", "prune"):
        printed = zg("doctor", "site", "--policy", role, env=env, check=True)
        roles[role] = dict(env, **rgw.user(role, json.loads(printed.stdout)))
    return admin, bucket, key, pub, roles


def _client(rgw, creds):
    return boto3.client("s3", endpoint_url=rgw.url, region_name="us-east-1",
                        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"], aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])


def test_the_printed_policies_say_what_each_role_may_do():
    """The documents themselves: scoped to the prefix, the backup role denied reads and deletes,
    only admin may bypass a governance lock, and the conditional write only on AWS."""
    def actions(doc, effect="Allow"):
        return {a for s in doc["Statement"] if s["Effect"] == effect for a in s["Action"]}

    plain = policy("backup", "b", "zfs/h", object_lock=False, aws=False)
    assert {"s3:PutObject", "s3:ListBucketMultipartUploads"} <= actions(plain)
    assert not actions(plain) & {"s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention"}
    assert {"s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"} <= actions(plain, "Deny")
    assert all(s["Resource"] in ("arn:aws:s3:::b", "arn:aws:s3:::b/zfs/h/*") for s in plain["Statement"])
    assert not any("Condition" in s for s in plain["Statement"] if "s3:PutObject" in s["Action"])
    locked = policy("backup", "b", "zfs/h", object_lock=True, aws=True)
    assert {"s3:PutObjectRetention", "s3:GetObjectRetention", "s3:GetBucketObjectLockConfiguration"} <= actions(locked)
    puts = [s for s in locked["Statement"] if s["Action"] == ["s3:PutObject"]]
    assert [s["Condition"] for s in puts] == [{"Null": {"s3:if-none-match": "false"}},
                                              {"Bool": {"s3:ObjectCreationOperation": "false"}}]
    assert "s3:BypassGovernanceRetention" in actions(policy("admin", "b", "", object_lock=True, aws=True))
    for role in ("backup", "restore", "prune"):
        assert "s3:BypassGovernanceRetention" not in actions(policy(role, "b", "p", object_lock=True, aws=True))
    assert not actions(policy("prune", "b", "p", object_lock=False, aws=True)) & {"s3:GetObject", "s3:PutObject"}
    assert not actions(policy("restore", "b", "p", object_lock=False, aws=True)) & {"s3:DeleteObject", "s3:PutObject"}


@pytest.mark.zfs
def test_each_role_works_with_only_its_policy(rgw, zfs_dataset, zfs_pool, tmp_path):
    admin, bucket, key, pub, roles = _site(rgw, tmp_path)
    want = {}
    for snap in ("s0", "s1", "s2", "s3"):  # two chains: s0 <- s1, then s2 (a full) <- s3
        fill(zfs_dataset.path, 60 + len(want), n=1)
        if snap == "s0":
            (zfs_dataset.path / "random.bin").write_bytes(os.urandom(7 << 20))  # a multipart archive
        extra = ["--full-every", "1"] if snap == "s2" else []
        p = zg("backup", zfs_dataset.name, "site", "--key", pub, "--snapshot", snap, *extra, env=roles["backup"])
        assert p.returncode == 0, p.stderr.decode()
        want[snap] = tree_digest(zfs_dataset.path)
    with Catalog(roles["backup"]["ZG_CATALOG"]) as cat:
        rows = {r.snapshot: r for r in cat.archives()}
        copies = cat.copies(rows["s0"].dest)
    # (RGW: the writer owns what it wrote; even the bucket's owner reads it only by listing)
    listed = {v["Key"]: v for v in admin.list_object_versions(Bucket=bucket, Prefix=PREFIX)["Versions"]}
    assert rows["s0"].size > 6 << 20 and "-" in listed[f"{PREFIX}/{rows['s0'].id}.zg"]["ETag"]  # multipart
    assert all(r.version for r in rows.values())  # what reads will name
    assert len(copies) == 4  # one per run: the backup role may not delete the older ones

    # The backup credential cannot read, delete, or write over an archive in a way a restore reads.
    backup = _client(rgw, roles["backup"])
    target = f"{PREFIX}/{rows['s1'].id}.zg"
    _refused(lambda: backup.get_object(Bucket=bucket, Key=target))
    _refused(lambda: backup.delete_object(Bucket=bucket, Key=target))
    _refused(lambda: backup.delete_object(Bucket=bucket, Key=target, VersionId=rows["s1"].version))
    # RGW knows no s3:if-none-match to refuse this by (and in a versioned bucket it writes even with
    # If-None-Match: *): a new version, over the recorded one
    backup.put_object(Bucket=bucket, Key=target, Body=b"ransom note")
    latest = [v for v in admin.list_object_versions(Bucket=bucket, Prefix=target)["Versions"] if v["IsLatest"]]
    assert latest[0]["Size"] == len(b"ransom note")
    _refused(lambda: backup.put_object(Bucket=bucket, Key="elsewhere/x", Body=b"x"))

    # Restore, with the restore credential only: the chain s0 <- s1 comes back as uploaded.
    dest = f"{zfs_pool}/roles-restored"
    p = zg("restore", "site", f"{zfs_dataset.name}@s1", dest, "--key", key, env=roles["restore"])
    assert p.returncode == 0, p.stderr.decode()
    assert tree_digest(AdminZfs().mountpoint(dest)) == want["s1"]
    AdminZfs().destroy(dest, recursive=True)
    reader = _client(rgw, roles["restore"])
    _refused(lambda: reader.delete_object(Bucket=bucket, Key=target))
    _refused(lambda: reader.put_object(Bucket=bucket, Key=f"{PREFIX}/new.zg", Body=b"x"))

    # Prune, with the prune credential only: the older chain and the older catalog copy go.
    pruner = _client(rgw, roles["prune"])
    _refused(lambda: pruner.get_object(Bucket=bucket, Key=f"{PREFIX}/{rows['s3'].id}.zg"))
    p = zg("prune", "site", "--keep-last", "1", env=roles["prune"])
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert "deleting 2 archives" in out and "deleted 1 old catalog copies" in out, out
    with Catalog(roles["backup"]["ZG_CATALOG"]) as cat:
        assert {r.snapshot for r in cat.archives()} == {"s2", "s3"} and len(cat.copies(rows["s0"].dest)) == 3
    current = {o["Key"] for o in admin.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/").get("Contents", [])}
    assert f"{PREFIX}/{rows['s0'].id}.zg" not in current and f"{PREFIX}/{rows['s3'].id}.zg" in current


@pytest.mark.parametrize("server", ["moto", "rgw"])
def test_a_delete_marker_or_a_write_over_an_archive_never_reaches_a_fetch(request, server, tmp_path):
    """A versioned bucket: whatever is put or marked deleted over an archive's key later, zg-fetch
    reads the version recorded at upload (thaw status included), and says so by its bytes."""
    url = request.getfixturevalue("aws").s3_url if server == "moto" else request.getfixturevalue("rgw").url
    s3, bucket, env = _versioned(url, tmp_path, "zfs", "h")
    with aws_env():
        blob = os.urandom(100_000)
        up = zg("upload", "--raw", "site", input=blob, env=env)
        assert up.returncode == 0, up.stderr.decode()
        archive_id = up.stdout.decode().split()[0]
        key = f"zfs/h/{archive_id}.zg"
        for attack in ("overwrite", "delete marker"):
            if attack == "overwrite":
                s3.put_object(Bucket=bucket, Key=key, Body=b"ransom note")
            else:
                s3.delete_object(Bucket=bucket, Key=key)
                _refused(lambda: s3.head_object(Bucket=bucket, Key=key), "404")
            got = zg("fetch", "site", archive_id, env=env)
            assert got.returncode == 0, (attack, got.stderr.decode())
            assert got.stdout == blob, attack
