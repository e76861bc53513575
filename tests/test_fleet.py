"""Fleets on one bucket (issue 12, item 6), on moto and on Ceph RGW: hosts that share a
destination's URL each get a prefix of their own (this machine's name by default, or ``host``);
zg-ls --all-hosts lists every host's chains from the bucket, and one host rebuilds another's
catalog (--host) and restores its dataset; a destination used before per-host prefixes keeps its
layout, and a host that lost its catalog is refused rather than starting new chains beside it."""

import json
import os
import socket
from pathlib import Path

import boto3
import pytest

from tests.helpers import assert_one_line_error, aws_env, zg
from tests.test_filters_zfs import fill, tree_digest
from zfsfuse import AdminZfs
from zfsglacier.catalog.db import Catalog

SERVERS = pytest.mark.parametrize("server", ["moto", "rgw"])
THIS = socket.gethostname().split(".")[0]


@pytest.fixture
def url(request, server):
    found = request.getfixturevalue("aws").s3_url if server == "moto" else request.getfixturevalue("rgw").url
    with aws_env():
        yield found


def _host(tmp_path, name, url, bucket, host_line, key):
    """One host's configuration and catalog; every host encrypts to the same key here."""
    d = tmp_path / name
    d.mkdir()
    (d / "config.toml").write_text(f'[destinations.site]\nurl = "s3://{bucket}/zfs"\nendpoint = "{url}"\n'
                                   f'storage_class = "STANDARD"\n{host_line}')
    return {"ZG_CONFIG": str(d / "config.toml"), "ZG_CATALOG": str(d / "catalog.db")}


def _backup(env, dataset, snap, pub):
    p = zg("backup", dataset, "site", "--key", pub, "--snapshot", snap, env=env)
    assert p.returncode == 0, p.stderr.decode()


@pytest.mark.zfs
@SERVERS
def test_hosts_share_a_bucket_each_under_its_own_prefix(url, zfs_dataset, zfs_pool, tmp_path):
    bucket = f"zg-fleet-{os.urandom(4).hex()}"
    s3 = boto3.client("s3", endpoint_url=url)
    s3.create_bucket(Bucket=bucket)
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    pub.write_text(zg("keygen", "-o", key, check=True).stdout.decode())
    here = _host(tmp_path, "here", url, bucket, "", key)  # host unset: this machine's name
    web2 = _host(tmp_path, "web2", url, bucket, 'host = "web2"\n', key)
    zfs = AdminZfs()
    other = f"{zfs_dataset.name}/web2"  # the fixture releases its holds and destroys it
    zfs.create(other)
    fill(zfs_dataset.path, 1, n=1)
    _backup(here, zfs_dataset.name, "s0", pub)
    fill(zfs_dataset.path, 2, n=1)
    _backup(here, zfs_dataset.name, "s1", pub)
    fill(Path(zfs.mountpoint(other)), 3, n=1)
    _backup(web2, other, "w0", pub)
    want = tree_digest(zfs.mountpoint(other))

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(k.startswith((f"zfs/{THIS}/", "zfs/web2/")) for k in keys), keys
    with Catalog(here["ZG_CATALOG"]) as cat:
        assert {r.dest for r in cat.archives()} == {f"s3://{bucket}/zfs/{THIS}"}
        some = cat.archives()[0].id
    p = zg("fetch", f"s3://{bucket}/zfs", some, env=dict(here, AWS_ENDPOINT_URL_S3=url))  # the URL as written
    assert_one_line_error(p, 11, f"--host {THIS}")
    p = zg("restore", f"s3://{bucket}/zfs", f"{zfs_dataset.name}@s1", f"{zfs_pool}/never", "--key", key,
           env=dict(here, AWS_ENDPOINT_URL_S3=url))
    assert_one_line_error(p, 11, f"--host {THIS}")

    listed = zg("ls", "site", "--all-hosts", "--key", key, "--json", env=here)
    assert listed.returncode == 0, listed.stderr.decode()
    hosts = {h["host"]: h for h in json.loads(listed.stdout)["hosts"]}
    assert set(hosts) == {THIS, "web2"}
    assert sorted(a["name"] for a in hosts[THIS]["archives"]) == [f"{zfs_dataset.name}@s0",
                                                                  f"{zfs_dataset.name}@s1"]
    assert [a["name"] for a in hosts["web2"]["archives"]] == [f"{other}@w0"]
    text = zg("ls", "site", "--all-hosts", env=here).stdout.decode()  # no key: guids, chains still
    assert "zfs/web2 (host web2): 1 archives" in text and f"zfs/{THIS} (host {THIS}): 2 archives" in text

    # This host rebuilds web2's catalog next to its own and restores web2's dataset.
    p = zg("catalog", "rebuild", "site", "--host", "web2", "--key", key, env=here)
    assert p.returncode == 0, p.stderr.decode()
    target = f"{zfs_pool}/fleet-restored"
    p = zg("restore", "site", "--host", "web2", f"{other}@w0", target, "--key", key, env=here)
    assert p.returncode == 0, p.stderr.decode()
    assert tree_digest(zfs.mountpoint(target)) == want
    zfs.destroy(target, recursive=True)
    p = zg("catalog", "rebuild", "site", "--host", "nobody", "--key", key,
           env=dict(here, ZG_CATALOG=str(tmp_path / "new.db")))
    assert p.returncode == 0 and "host prefixes" in p.stderr.decode() and "web2" in p.stderr.decode()


@pytest.mark.zfs
def test_a_destination_used_before_host_prefixes_keeps_its_layout(aws, zfs_dataset, tmp_path):
    """Archives right under the prefix (host = ""): with the setting removed, the host whose
    catalog records them goes on there; a host without its catalog is refused, naming both ways."""
    with aws_env():
        bucket = f"zg-flat-{os.urandom(4).hex()}"
        boto3.client("s3", endpoint_url=aws.s3_url).create_bucket(Bucket=bucket)
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    pub.write_text(zg("keygen", "-o", key, check=True).stdout.decode())
    env = _host(tmp_path, "old", aws.s3_url, bucket, 'host = ""\n', key)
    fill(zfs_dataset.path, 4, n=1)
    _backup(env, zfs_dataset.name, "f0", pub)
    config = tmp_path / "old" / "config.toml"
    config.write_text(config.read_text().replace('host = ""\n', ""))
    fill(zfs_dataset.path, 5, n=1)
    _backup(env, zfs_dataset.name, "f1", pub)
    with Catalog(env["ZG_CATALOG"]) as cat:
        rows = cat.archives()
    assert {r.dest for r in rows} == {f"s3://{bucket}/zfs"} and any(r.incremental for r in rows)

    lost = dict(env, ZG_CATALOG=str(tmp_path / "lost.db"))
    fill(zfs_dataset.path, 6, n=1)
    p = zg("backup", zfs_dataset.name, "site", "--key", pub, "--snapshot", "f2", env=lost)
    assert_one_line_error(p, 18, "right under its prefix", 'host = ""', 'host = "auto"')
    assert not os.path.exists(lost["ZG_CATALOG"])
    p = zg("ls", "/tmp", "--host", "x", env=env)
    assert_one_line_error(p, 2, "s3://")
