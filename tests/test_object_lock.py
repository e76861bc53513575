"""S3 Object Lock sized to chains (issue 12, item 4), on moto and on Ceph RGW: every archive is
locked as configured and the server itself refuses to delete it; a lock the server dropped
(multipart uploads: both servers drop the headers) is set afterwards and checked; a chain's
older archives are locked at least as long as what depends on them; zg-prune and zg-rm say
until when; zg-doctor checks the bucket."""

import datetime
import io
import json
import os
import time

import boto3
import botocore.exceptions
import pytest

from tests.helpers import assert_one_line_error, aws_env, zg
from tests.test_filters_zfs import fill
from zfsglacier.catalog.db import Catalog
from zfsglacier.errors import RetainedError, StoreError
from zfsglacier.plumbing.parts import MiB
from zfsglacier.stores import open_store

SERVERS = pytest.mark.parametrize("server", ["moto", "rgw"])
DAY = 86400


@pytest.fixture
def url(request, server):
    """The endpoint of ``server``, with the test credentials in this process's environment."""
    found = request.getfixturevalue("aws").s3_url if server == "moto" else request.getfixturevalue("rgw").url
    with aws_env():
        yield found


def _bucket(url, lock=True):
    name = f"zg-lock-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True}
                                                                       if lock else {}))
    return name


def _store(url, bucket, mode="compliance", days=1):
    return open_store(f"s3://{bucket}/zfs", endpoint=url, storage_class="STANDARD", part_size=5 * MiB,
                      object_lock=mode, lock_days=days)


@SERVERS
@pytest.mark.parametrize("size", [100, 6 * MiB + 1], ids=["single", "multipart"])
def test_each_archive_is_locked_and_the_server_refuses_to_delete_it(url, size):
    bucket = _bucket(url)
    store = _store(url, bucket)
    data = os.urandom(size)
    before = time.time()
    info = store.upload(io.BytesIO(data), {}, jobs=2)
    assert before + DAY <= info.locked_until <= time.time() + DAY + 2 and info.lock_mode == "compliance"
    s3 = boto3.client("s3", endpoint_url=url)
    head = s3.head_object(Bucket=bucket, Key=store.key(info.id))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].timestamp() == pytest.approx(info.locked_until, abs=1)
    with pytest.raises(botocore.exceptions.ClientError) as refused:  # the server's own refusal
        s3.delete_object(Bucket=bucket, Key=store.key(info.id), VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(RetainedError) as err:
        store.delete(info.id)
    day = time.strftime("%Y-%m-%d", time.gmtime(info.locked_until))
    assert day in str(err.value) and "compliance" in str(err.value)
    assert store.read_all(info.id) == data and store.stat(info.id).locked_until == info.locked_until


@SERVERS
def test_retain_only_ever_extends_and_keeps_the_mode(url):
    bucket = _bucket(url)
    store = _store(url, bucket, mode="governance")
    info = store.upload(io.BytesIO(b"base"), {})
    later = store.retain(info.id, info.locked_until + 2 * DAY)
    assert later.locked_until == pytest.approx(info.locked_until + 2 * DAY, abs=1) and later.lock_mode == "governance"
    same = store.retain(info.id, info.locked_until)  # shorter: nothing asked
    assert same.locked_until == later.locked_until


@SERVERS
def test_a_governance_lock_yields_to_bypass_and_then_the_bytes_are_gone(url):
    """Deleted by its version: not a delete marker over bytes that stay billed."""
    bucket = _bucket(url)
    store = _store(url, bucket, mode="governance")
    info = store.upload(io.BytesIO(b"x" * 1000), {})
    with pytest.raises(RetainedError, match="bypass-governance"):
        store.delete(info.id)
    store.delete(info.id, bypass_governance=True)
    versions = boto3.client("s3", endpoint_url=url).list_object_versions(Bucket=bucket, Prefix="zfs/")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")


@SERVERS
def test_a_bucket_without_object_lock_is_refused_before_any_byte(url):
    bucket = _bucket(url, lock=False)
    store = _store(url, bucket)
    for size in (10, 6 * MiB):
        with pytest.raises(StoreError, match="has no Object Lock") as err:
            store.upload(io.BytesIO(os.urandom(size)), {})
        assert err.value.code == "ObjectLockNotEnabled"
    s3 = boto3.client("s3", endpoint_url=url)
    assert not s3.list_objects_v2(Bucket=bucket).get("Contents")
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_lock_settings_are_checked_when_the_store_is_made():
    for options, words in (({"object_lock": "forever", "lock_days": 3}, "governance or compliance"),
                           ({"object_lock": "compliance"}, "needs lock_days"),
                           ({"object_lock": "compliance", "lock_days": 0}, "needs lock_days"),
                           ({"lock_days": 30}, "needs object_lock")):
        with pytest.raises(Exception, match=words):
            open_store("s3://b/p", **options)
    with pytest.raises(Exception, match="do not apply"):
        open_store("file:///tmp/x", object_lock="compliance", lock_days=3)


def _config(tmp_path, url, bucket, mode, days):
    path = tmp_path / "config.toml"
    path.write_text(f'[destinations.locked]\nurl = "s3://{bucket}/zfs"\nendpoint = "{url}"\n'
                    f'storage_class = "STANDARD"\nobject_lock = "{mode}"\nlock_days = {days}\n')
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    env = {"ZG_CONFIG": str(path), "ZG_CATALOG": str(tmp_path / "catalog.db")}
    pub.write_text(zg("keygen", "-o", key, check=True, env=env).stdout.decode())
    return env, pub


@pytest.mark.zfs
@SERVERS
def test_a_chain_stays_locked_as_long_as_its_newest_incremental(url, zfs_dataset, tmp_path):
    """Two days' lock per archive, and one more incremental: the full and the first incremental
    are extended to the newest one's date, catalog copies are locked too; zg-prune keeps them
    saying until when, zg-rm refuses with exit 20, and zg-doctor says the bucket is fit."""
    bucket = _bucket(url)
    env, pub = _config(tmp_path, url, bucket, "compliance", 2)
    for i, snap in enumerate(("s0", "s1", "s2")):
        fill(zfs_dataset.path, 20 + i, n=2)
        p = zg("backup", zfs_dataset.name, "locked", "--key", pub, "--snapshot", snap, env=env)
        assert p.returncode == 0, p.stderr.decode()
        if i < 2:
            time.sleep(1.1)  # each archive's own date is a second later than the one before
    with Catalog(env["ZG_CATALOG"]) as cat:
        rows = sorted(cat.archives(), key=lambda r: r.snapshot)
        copies = cat.copies(rows[0].dest)
    assert [r.snapshot for r in rows] == ["s0", "s1", "s2"] and rows[2].incremental
    s3 = boto3.client("s3", endpoint_url=url)
    pre = rows[0].dest.split("/", 3)[3]  # zfs/<this host> (a named destination's default)
    newest = s3.head_object(Bucket=bucket, Key=f"{pre}/{rows[2].id}.zg")["ObjectLockRetainUntilDate"].timestamp()
    for r in rows:  # the server's word, not the catalog's
        head = s3.head_object(Bucket=bucket, Key=f"{pre}/{r.id}.zg")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"].timestamp() >= newest - 1, r.snapshot
        assert r.locked_until == pytest.approx(head["ObjectLockRetainUntilDate"].timestamp(), abs=1)
    assert copies and all(s3.head_object(Bucket=bucket, Key=f"{pre}/{c}.zg").get("ObjectLockMode") for c in copies)

    prune = zg("prune", "locked", "--keep-last", "1", env=env)
    assert prune.returncode == 0, prune.stderr.decode()
    out = prune.stdout.decode()
    assert "deleting 0 archives" in out and "locked 0" not in out  # the chain of the kept one needs all
    rm = zg("rm", "locked", rows[2].id, env=env)
    assert_one_line_error(rm, 20, "locked until", time.strftime("%Y-%m-%d", time.gmtime(newest)), "compliance")
    assert s3.head_object(Bucket=bucket, Key=f"{pre}/{rows[2].id}.zg")["ContentLength"] == rows[2].size

    ls = zg("ls", "locked", env=env).stdout.decode()
    assert ls.count(f"locked until {time.strftime('%Y-%m-%d', time.gmtime(newest))} (compliance)") == 3, ls

    doctor = zg("doctor", "locked", "--json", env=env)
    found = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert found["object lock"]["status"] == "ok" and "compliance" in found["object lock"]["detail"]


@pytest.mark.zfs
def test_zg_prune_names_what_a_lock_keeps(aws, zfs_dataset, tmp_path):
    """Two fulls: the older one no rule keeps is locked: zg-prune lists it under "locked" with its
    date and deletes nothing; zg-doctor fails a destination whose bucket has no Object Lock."""
    with aws_env():
        bucket = _bucket(aws.s3_url)
    env, pub = _config(tmp_path, aws.s3_url, bucket, "governance", 3)
    for snap in ("a", "b"):
        fill(zfs_dataset.path, 5, n=1)
        p = zg("backup", zfs_dataset.name, "locked", "--key", pub, "--snapshot", snap, "--full-every", "1", env=env)
        assert p.returncode == 0, p.stderr.decode()
    prune = zg("prune", "locked", "--keep-last", "1", env=env)
    assert prune.returncode == 0, prune.stderr.decode()
    out = prune.stdout.decode()
    day = datetime.datetime.fromtimestamp(time.time() + 3 * DAY, datetime.timezone.utc).strftime("%Y-%m-%d")
    assert "deleting 0 archives" in out and "locked 1 archives" in out and f"locked until {day} (governance)" in out

    with aws_env():
        plain = _bucket(aws.s3_url, lock=False)
    (tmp_path / "config.toml").write_text((tmp_path / "config.toml").read_text().replace(bucket, plain))
    doctor = zg("doctor", "locked", "--json", env=env)
    assert doctor.returncode == 10
    found = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert found["object lock"]["status"] == "fail"
