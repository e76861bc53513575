"""S3-compatible servers: what Ceph's radosgw lacks, found out and worked around (never guessed
from a name), through the store and through the commands; and the vault API of moto, which
omits fields AWS documents.  The store contract runs on RGW too (test_store_contract.py)."""

import io
import os
import socket
import tracemalloc
import urllib.parse

import boto3
import pytest

from tests.helpers import aws_env, zg
from tests.servers.faultproxy import FaultProxy
from zfsglacier.errors import StoreError
from zfsglacier.plumbing.parts import MiB
from zfsglacier.stores import open_store

pytestmark = pytest.mark.usefixtures("rgw_env")


@pytest.fixture
def rgw_env(rgw):
    with aws_env():
        yield


@pytest.fixture
def bucket(rgw):
    name = f"zg-compat-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=rgw.url).create_bucket(Bucket=name)
    return name


def test_a_part_damaged_on_the_way_is_refused_by_the_server_and_sent_again(rgw, bucket):
    """RGW ignores x-amz-checksum-sha256 (a wrong value is stored with 200) but checks Content-MD5:
    a part flipped between us and the server is refused (BadDigest) and sent again, instead of
    the whole upload failing after the fact."""
    port = urllib.parse.urlsplit(rgw.url).port
    data = os.urandom(12 * MiB)
    with FaultProxy(port) as proxy:
        store = open_store(f"s3://{bucket}/b", part_size=5 * MiB, endpoint=proxy.url, storage_class="STANDARD")
        proxy.inject("flip_body", count=1, when=r"^PUT .*partNumber=2")
        info = store.upload(io.BytesIO(data), {}, jobs=1)
        assert proxy.injected["flip_body"] == 1
        puts = [line for kind, line in proxy.events if line.startswith("PUT ") and "partNumber=2" in line]
        assert len(puts) == 2  # refused once, sent again
    assert open_store(f"s3://{bucket}/b", endpoint=rgw.url).read_all(info.id) == data


def test_get_object_attributes_answered_with_the_object_is_neither_read_nor_retried(rgw, bucket):
    """RGW answers GET ?attributes with the whole object; botocore took it for a cut XML reply and
    fetched it 8 times.  The answer is closed unread, asked once per store, and the parts come from
    zfsglacier's own recorded plan."""
    store = open_store(f"s3://{bucket}/b", part_size=5 * MiB, endpoint=rgw.url, storage_class="STANDARD")
    data = os.urandom(32 * MiB + 7)
    info = store.upload(io.BytesIO(data), {}, jobs=2)
    reader = open_store(f"s3://{bucket}/b", endpoint=rgw.url)
    asked = []
    reader.client.meta.events.register_first("before-send.s3.GetObjectAttributes", lambda **kw: asked.append(1))
    tracemalloc.start()
    try:
        ranges = reader._part_ranges(reader.key(info.id), info.id, 7, len(data), 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ranges is None and asked == [1] and peak < 4 * MiB  # the 32 MiB body was never read
    assert reader.read_all(info.id, jobs=3) == data  # by the recorded plan, checked by the ETag
    assert asked == [1]  # learned: not asked again


def test_a_storage_class_the_server_lacks_is_named(rgw, bucket):
    for size in (100, 6 * MiB):  # one PUT, and a multipart upload
        store = open_store(f"s3://{bucket}/b", part_size=5 * MiB, endpoint=rgw.url, storage_class="GLACIER_IR")
        with pytest.raises(StoreError, match="does not offer storage class GLACIER_IR") as err:
            store.upload(io.BytesIO(os.urandom(size)), {})
        assert "zone placement add" in str(err.value)
    assert boto3.client("s3", endpoint_url=rgw.url).list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def _config(tmp_path, rgw, bucket):
    path = tmp_path / "config.toml"
    path.write_text(f'[destinations.ceph]\nurl = "s3://{bucket}/zfs"\nendpoint = "{rgw.url}"\n'
                    f'part_size = "5M"\nstorage_class = "DEEP_ARCHIVE"\n')
    return {"ZG_CONFIG": str(path), "ZG_CATALOG": str(tmp_path / "catalog.db"), "ZG_POLL_SECONDS": "0.1",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}  # the destination's endpoint wins over the chain's


def test_the_commands_round_trip_a_multipart_cold_archive_through_a_configured_endpoint(tmp_path, rgw, bucket):
    """A [destinations.NAME] with endpoint, part_size = "5M" and the default DEEP_ARCHIVE class:
    zg-upload, then zg-fetch to a pipe and to a file, zg-verify, and zg-fetch on another machine
    (no catalog: the recorded plan and the ETag), all without a thaw (RGW has no RestoreObject
    and serves the class at once)."""
    env = _config(tmp_path, rgw, bucket)
    data = os.urandom(13 * MiB)
    up = zg("upload", "--raw", "ceph", input=data, env=env)
    assert up.returncode == 0, up.stderr.decode()
    archive_id = up.stdout.decode().split()[0]
    got = zg("fetch", "ceph", archive_id, env=env)
    assert got.returncode == 0 and got.stdout == data, got.stderr.decode()
    out = tmp_path / "copy.zg"
    assert zg("fetch", "ceph", archive_id, "-o", out, env=env).returncode == 0 and out.read_bytes() == data
    ver = zg("verify", "ceph", env=env)
    assert ver.returncode == 0, ver.stderr.decode()
    elsewhere = dict(env, ZG_CATALOG=str(tmp_path / "other.db"))
    got = zg("fetch", "ceph", archive_id, env=elsewhere)
    assert got.returncode == 0 and got.stdout == data, got.stderr.decode()


def test_a_config_part_size_that_is_not_a_size_is_one_line(tmp_path, rgw, bucket):
    env = _config(tmp_path, rgw, bucket)
    (tmp_path / "config.toml").write_text(f'[destinations.ceph]\nurl = "s3://{bucket}/zfs"\npart_size = "big"\n')
    p = zg("upload", "--raw", "ceph", input=b"x", env=env)
    assert p.returncode == 2 and p.stderr.decode().count("\n") == 1 and "part_size" in p.stderr.decode()


def test_moto_vault_jobs_without_a_tree_hash_and_with_size_0_read_by_what_was_recorded(tmp_path):
    """moto's DescribeJob omits ArchiveSHA256TreeHash and says ArchiveSizeInBytes 0: zg-fetch used
    to die on a KeyError, then (with the size taken as 0) wrote nothing and said 0.  The size and
    tree hash recorded at upload are used and checked; without a catalog, the read is refused."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        url = f"http://{host}:{port}"
        boto3.client("glacier", endpoint_url=url).create_vault(vaultName="v")
        env = {"AWS_ENDPOINT_URL_GLACIER": url, "ZG_CATALOG": str(tmp_path / "catalog.db"), "ZG_POLL_SECONDS": "0.5"}
        data = os.urandom(500_000)  # one MiB or less: moto's "tree hash" is the SHA-256 of the whole
        up = zg("upload", "--raw", "glacier://v", input=data, env=env)
        assert up.returncode == 0, up.stderr.decode()
        archive_id = up.stdout.decode().split()[0]
        got = zg("fetch", "glacier://v", "--", archive_id, env=env)
        assert got.returncode == 0 and got.stdout == data, got.stderr.decode()
        lost = zg("fetch", "glacier://v", "--", archive_id, env=dict(env, ZG_CATALOG=str(tmp_path / "none.db")))
        assert lost.returncode == 10 and b"names no size" in lost.stderr and lost.stdout == b""
    finally:
        moto.stop()


# ---- zg-doctor

def _doctor(dest, env):
    p = zg("doctor", dest, "--json", env=env)
    return p.returncode, (__import__("json").loads(p.stdout) if p.stdout else None), p.stderr.decode()


def _status(doc, name):
    return {c["name"]: c for c in doc["checks"]}[name]


def test_doctor_finds_what_rgw_lacks_records_it_and_the_commands_ask_no_more(tmp_path, rgw, bucket):
    env = _config(tmp_path, rgw, bucket)
    data = os.urandom(13 * MiB)
    up = zg("upload", "--raw", "ceph", input=data, env=env)
    archive_id = up.stdout.decode().split()[0]
    code, doc, err = _doctor("ceph", env)
    assert code == 0, err
    assert _status(doc, "bucket")["status"] == "ok" and _status(doc, "clock")["status"] == "ok"
    assert _status(doc, "class DEEP_ARCHIVE")["status"] == "ok" and _status(doc, "class STANDARD")["status"] == "ok"
    assert "no SHA-256" in _status(doc, "checksums")["detail"]
    assert "no part listings" in _status(doc, "reads")["detail"]
    assert "served at once" in _status(doc, "cold reads")["detail"]
    assert doc["capabilities"] == {"lists_parts": False, "heads_parts": False, "serves_cold": True}
    listed = boto3.client("s3", endpoint_url=rgw.url).list_objects_v2(Bucket=bucket)["Contents"]
    host = socket.gethostname().split(".")[0]  # a named destination's default host prefix
    assert [o["Key"] for o in listed] == [f"zfs/{host}/{archive_id}.zg"]  # the probes left nothing
    assert not boto3.client("s3", endpoint_url=rgw.url).list_multipart_uploads(Bucket=bucket).get("Uploads")
    # the commands take what was recorded: through a proxy, a fetch asks no GetObjectAttributes and no
    # one-byte probe GET
    port = urllib.parse.urlsplit(rgw.url).port
    with FaultProxy(port) as proxy:
        (tmp_path / "config.toml").write_text((tmp_path / "config.toml").read_text().replace(rgw.url, proxy.url))
        got = zg("fetch", "ceph", archive_id, env=env)
        assert got.returncode == 0 and got.stdout == data, got.stderr.decode()
        lines = [line for _, line in proxy.events]
    assert not [line for line in lines if "attributes" in line or "partNumber" in line], lines
    assert not [line for line in lines if line.startswith("GET ") and "zg-doctor" in line]


def test_doctor_on_moto_and_a_lifecycle_rule_that_would_delete_archives(tmp_path, aws):
    s3 = boto3.client("s3", endpoint_url=aws.s3_url)
    s3.create_bucket(Bucket="doc-moto")
    env = dict(aws.env, ZG_CATALOG=str(tmp_path / "cat.db"))
    code, doc, err = _doctor("s3://doc-moto/zfs", env)
    assert code == 0, err
    assert _status(doc, "checksums")["status"] == "ok" and _status(doc, "part limit")["detail"].startswith("10,000")
    assert _status(doc, "lifecycle")["status"] == "ok"
    s3.put_bucket_lifecycle_configuration(Bucket="doc-moto", LifecycleConfiguration={"Rules": [
        {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 90}}]})
    code, doc, err = _doctor("s3://doc-moto/zfs", env)
    assert code == 10
    assert "rule tidy deletes objects" in _status(doc, "lifecycle")["detail"]
    code, doc, err = _doctor("s3://no-such-bucket/zfs", env)
    assert code == 10 and _status(doc, "bucket")["status"] == "fail"


def test_doctor_on_a_vault_and_a_directory(tmp_path, aws):
    boto3.client("glacier", endpoint_url=aws.vault_url).create_vault(vaultName="doc-vault")
    env = dict(aws.env, ZG_CATALOG=str(tmp_path / "cat.db"))
    code, doc, err = _doctor("glacier://doc-vault", env)
    assert code == 0 and _status(doc, "vault")["status"] == "ok", err
    code, doc, err = _doctor(f"file://{tmp_path}/not-mounted", env)
    assert code == 10 and "zg-init" in _status(doc, "destination")["detail"]


@pytest.mark.parametrize("server", ["rgw", "moto"])
def test_each_part_carries_the_check_its_server_makes(request, server, tmp_path):
    """A server that keeps SHA-256 part checksums (moto, as AWS) gets the SHA-256 header and no MD5;
    one that ignores the header (RGW) gets Content-MD5 and no SHA-256 (nor botocore's default
    CRC32): each part is hashed once for its check, plus the whole's SHA-256 for the catalog."""
    if server == "rgw":
        url = request.getfixturevalue("rgw").url
    else:
        url = request.getfixturevalue("aws").s3_url
    name = f"zg-sums-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=name)
    store = open_store(f"s3://{name}/b", part_size=5 * MiB, endpoint=url, storage_class="STANDARD")
    seen = []
    store.client.meta.events.register("before-send.s3.UploadPart", lambda request, **_: seen.append(
        ("x-amz-checksum-sha256" in request.headers, "Content-MD5" in request.headers,
         sorted(h.lower() for h in request.headers if h.lower().startswith("x-amz-checksum-")
                and h.lower() != "x-amz-checksum-sha256"))))
    data = os.urandom(11 * MiB)
    info = store.upload(io.BytesIO(data), {}, jobs=2)
    # and no CRC32 of botocore's own (it adds one where no x-amz-checksum-* header is named)
    assert seen == [(server == "moto", server == "rgw", [])] * 3
    assert info.sha256 == __import__("hashlib").sha256(data).hexdigest()
    assert store.read_all(info.id) == data
