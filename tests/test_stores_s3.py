"""What only the s3:// store does, against moto's S3 in server mode (a real HTTP endpoint on
127.0.0.1, reached through AWS_ENDPOINT_URL like any endpoint): its checksum fallbacks, payload
signing, restores in progress, errors in one line.  The contract every store keeps is in
test_store_contract.py.  moto checks no checksums of its own, so damage is made on the server
side (its in-process backend) to show that the store catches it."""

import base64
import hashlib
import io
import itertools
import os

import boto3
import moto.settings
import pytest
from moto.backends import get_backend
from moto.moto_api import state_manager
from moto.server import ThreadedMotoServer

from tests.servers.faultproxy import FaultProxy
from zfsglacier.errors import IntegrityError, RestorePendingError, StoreError, UsageError
from zfsglacier.plumbing.parts import MiB
from zfsglacier.stores import open_store
from tests.helpers import aws_env

PART = 5 * MiB  # S3's smallest part: keeps multipart tests small
_names = itertools.count(1)


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with aws_env(AWS_ENDPOINT_URL=f"http://{host}:{port}"):
        yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(moto_url):
    name = f"zg-test-{next(_names)}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(bucket):
    return boto3.client("s3")


def store_for(bucket, storage_class="STANDARD", prefix="backups"):
    return open_store(f"s3://{bucket}/{prefix}", part_size=PART, storage_class=storage_class)


def moto_bucket(bucket):
    return get_backend("s3")["123456789012"]["aws"].buckets[bucket]


def count_calls(store, operation):
    """Count API calls the store makes (after botocore's own retries: one per call)."""
    calls = []
    store.client.meta.events.register(f"before-call.s3.{operation}",
                                      lambda **kw: calls.append(1))
    return calls


def count_attempts(store):
    """Count HTTP requests actually sent, retries included."""
    sent = []
    store.client.meta.events.register("before-send.s3.*", lambda **kw: sent.append(1))
    return sent


def no_uploads_left(s3, bucket):
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_roundtrip_with_metadata_and_listing(bucket, s3):
    store = store_for(bucket)
    data = os.urandom(3 * PART + 1234)
    puts = count_calls(store, "UploadPart")
    info = store.upload(io.BytesIO(data), {"dataset": "tank/fs", "snapshot": "a"}, jobs=3)
    assert len(puts) == 4 and info.checksum.endswith("-4") and info.size == len(data)
    assert s3.head_object(Bucket=bucket, Key=f"backups/{info.id}.zg")["Metadata"]["snapshot"] == "a"
    assert store.read_all(info.id, jobs=3) == data
    listed = list(store.list())
    assert [a.id for a in listed] == [info.id] and listed[0].metadata["dataset"] == "tank/fs"
    assert no_uploads_left(s3, bucket)


def test_small_stream_is_one_put(bucket, s3):
    store = store_for(bucket, "GLACIER_IR")
    puts = count_calls(store, "PutObject")
    info = store.upload(io.BytesIO(b"tiny"), {})
    assert len(puts) == 1 and info.storage_class == "GLACIER_IR" and info.state == "ready"
    assert store.read_all(info.id) == b"tiny"  # GLACIER_IR reads at once


def test_deep_archive_needs_a_restore_then_reads(bucket):
    store = store_for(bucket, "DEEP_ARCHIVE")
    data = os.urandom(PART + 10)
    info = store.upload(io.BytesIO(data), {})
    assert info.state == "frozen" and store.thaw_status(info.id).state == "frozen"
    with pytest.raises(RestorePendingError, match="is not restored") as pending:
        store.open_read(info.id)
    assert pending.value.thaw == (store.url, info.id)
    with pytest.raises(UsageError, match="no Expedited"):
        store.request_thaw(info.id, "Expedited")
    status = store.request_thaw(info.id, "Bulk", days=2)  # moto restores at once
    assert status.state == "thawed" and status.expires
    assert store.read_all(info.id) == data


def test_restore_in_progress_is_reported_and_blocks_reads(bucket):
    store = store_for(bucket, "GLACIER")
    info = store.upload(io.BytesIO(b"cold"), {})
    state_manager.set_transition("s3::keyrestore", {"progression": "manual", "times": 10**9})
    try:
        store.request_thaw(info.id, "Standard")
        moto_bucket(bucket).keys[f"backups/{info.id}.zg"].status = "IN_PROGRESS"
        status = store.thaw_status(info.id)
        assert status.state == "thawing" and status.expected_wait == 5 * 3600
        assert store.request_thaw(info.id).state == "thawing"  # asking again is fine
        with pytest.raises(RestorePendingError, match="still in progress"):
            store.open_read(info.id)
        moto_bucket(bucket).keys[f"backups/{info.id}.zg"].status = "RESTORED"
        assert store.read_all(info.id) == b"cold"
    finally:
        state_manager.unset_transition("s3::keyrestore")



def test_commit_catches_a_part_damaged_before_completion(bucket, s3):
    """The composite checksum S3 computes from what it holds must equal the local one."""
    store = store_for(bucket)

    def rot(params, **kw):
        part = moto_bucket(bucket).multiparts[params["UploadId"]].parts[2]
        part.value = b"\0" + part.value[1:]

    store.client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", rot)
    with pytest.raises(IntegrityError, match="does not match the local data"):
        store.upload(io.BytesIO(os.urandom(2 * PART + 5)), {})
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert no_uploads_left(s3, bucket)


def drop_from_answer(store, operation, field):
    """Make the server look as if its answer to ``operation`` had no ``field``."""
    store.client.meta.events.register(f"after-call.s3.{operation}",
                                      lambda parsed, **kw: parsed.pop(field, None))


def test_a_server_that_promises_no_sha256_gets_each_part_checked_by_md5(bucket, s3):
    """Without ChecksumAlgorithm=SHA256 acknowledged at the start, S3 may report no composite
    SHA-256 at the end: each part's ETag is then compared with its MD5, and the object's
    multipart ETag with the MD5 of those."""
    store = store_for(bucket)
    drop_from_answer(store, "CreateMultipartUpload", "ChecksumAlgorithm")
    drop_from_answer(store, "HeadObject", "ChecksumSHA256")
    data = os.urandom(2 * PART + 5)
    info = store.upload(io.BytesIO(data), {})
    assert info.checksum is None and store.read_all(info.id) == data

    liar = store_for(bucket)
    drop_from_answer(liar, "CreateMultipartUpload", "ChecksumAlgorithm")
    liar.client.meta.events.register("after-call.s3.UploadPart",
                                     lambda parsed, **kw: parsed.update(ETag='"%s"' % ("0" * 32)))
    with pytest.raises(IntegrityError, match="another MD5"):
        liar.upload(io.BytesIO(data), {})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1 and no_uploads_left(s3, bucket)


def test_a_promised_composite_sha256_that_never_comes_fails_the_upload(bucket, s3):
    """Parts go without an MD5 when S3 promised a composite SHA-256; if it then reports none,
    nothing was verified, so the object is deleted and the upload fails."""
    store = store_for(bucket)
    drop_from_answer(store, "HeadObject", "ChecksumSHA256")
    with pytest.raises(IntegrityError, match="no checksum to compare"):
        store.upload(io.BytesIO(os.urandom(2 * PART + 5)), {})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0 and no_uploads_left(s3, bucket)


def test_bodies_are_hashed_once_not_again_for_the_signature(bucket, tmp_path, monkeypatch):
    """Each part's SHA-256 travels in the x-amz-checksum-sha256 header, which is signed and which
    S3 checks against the body, so the signature itself need not hash the body (UNSIGNED-PAYLOAD,
    as botocore does over HTTPS), unless the user's AWS config asks for payload signing."""
    def sent_headers():
        store, seen = store_for(bucket), []
        store.client.meta.events.register("before-send.s3.UploadPart",
                                          lambda request, **kw: seen.append(dict(request.headers)))
        store.upload(io.BytesIO(os.urandom(PART + 1)), {})
        return [{k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in h.items()} for h in seen]

    for h in sent_headers():
        assert h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "x-amz-checksum-sha256" in h["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    config = tmp_path / "aws.ini"
    config.write_text("[default]\ns3 =\n    payload_signing_enabled = true\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for h in sent_headers():
        assert len(h["x-amz-content-sha256"]) == 64 and h["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD"


def answer_part_checksums(store, data, *, page=2, wrong=None):
    """Make GetObjectAttributes answer as AWS does (moto lists no parts): each part's size and
    SHA-256, ``page`` parts per answer with IsTruncated / NextPartNumberMarker; part ``wrong``
    gets another part's checksum.  Returns the markers the store asked with."""
    sizes = [PART] * (len(data) // PART) + ([len(data) % PART] if len(data) % PART else [])
    parts, offset = [], 0
    for n, size in enumerate(sizes, 1):
        digest = hashlib.sha256(data[offset:offset + size]).digest()
        parts.append({"PartNumber": n, "Size": size, "ChecksumSHA256": base64.b64encode(digest).decode()})
        offset += size
    if wrong is not None:
        parts[wrong - 1] = dict(parts[wrong - 1], ChecksumSHA256=parts[wrong % len(parts)]["ChecksumSHA256"])
    asked = []

    def ask(params, **kw):
        asked.append(params.get("PartNumberMarker", 0))

    def answer(parsed, **kw):
        start = int(asked[-1] or 0)
        block = parts[start:start + page]
        parsed["ObjectParts"] = {"TotalPartsCount": len(parts), "PartNumberMarker": start, "MaxParts": page,
                                 "IsTruncated": start + page < len(parts),
                                 "NextPartNumberMarker": block[-1]["PartNumber"], "Parts": block}

    store.client.meta.events.register("provide-client-params.s3.GetObjectAttributes", ask)
    store.client.meta.events.register("after-call.s3.GetObjectAttributes", answer)
    return asked


def test_reads_use_part_sha256s_from_get_object_attributes_as_on_aws(bucket):
    """On AWS each range is checked against its part's SHA-256 from GetObjectAttributes (paged),
    so no HEAD per part and no MD5 are needed; a part whose bytes do not match is refused."""
    data = os.urandom(4 * PART + 11)
    info = store_for(bucket).upload(io.BytesIO(data), {})
    store = store_for(bucket)
    asked = answer_part_checksums(store, data)
    part_heads = []
    store.client.meta.events.register("provide-client-params.s3.HeadObject",
                                      lambda params, **kw: part_heads.append(1) if "PartNumber" in params else None)
    assert store.read_all(info.id) == data
    assert asked == [0, 2, 4] and part_heads == []

    liar = store_for(bucket)
    answer_part_checksums(liar, data, wrong=3)
    with liar.open_read(info.id) as r:
        assert r.read(2 * PART) == data[:2 * PART]
        with pytest.raises(IntegrityError, match="part 3"):
            r.read()





def test_metadata_over_2_kib_is_refused_before_any_request(bucket):
    store = store_for(bucket)
    sent = count_attempts(store)
    with pytest.raises(UsageError, match="2048"):
        store.open_upload({"notes": "x" * 2100})
    assert sent == []


def test_missing_bucket_fails_at_once_in_one_line(moto_url):
    store = store_for("zg-no-such-bucket")
    sent = count_attempts(store)
    with pytest.raises(StoreError, match="bucket zg-no-such-bucket does not exist") as err:
        store.upload(io.BytesIO(b"x"), {})
    assert "\n" not in str(err.value) and len(sent) == 1
    with pytest.raises(StoreError, match="does not exist"):
        store.stat("20260101T000000Z-00000000")


def test_bad_credentials_fail_at_once_in_one_line(bucket):
    store = store_for(bucket)
    sent = count_attempts(store)
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # moto now checks access keys
    try:
        with pytest.raises(StoreError, match="access denied: InvalidAccessKeyId") as err:
            store.upload(io.BytesIO(b"x"), {})
    finally:
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    assert "\n" not in str(err.value) and len(sent) == 1


def test_a_body_cut_mid_read_is_fetched_again(bucket, moto_url, monkeypatch):
    data = os.urandom(2 * PART + 3)
    info = store_for(bucket).upload(io.BytesIO(data), {})
    with FaultProxy(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        store = store_for(bucket)
        proxy.inject("truncate", count=1, when=r"^GET .*\.zg")
        assert store.read_all(info.id, jobs=1) == data
        assert proxy.injected["truncate"] == 1




def test_store_errors_carry_the_providers_code():
    """Callers act on a failure by its code (NoSuchUpload, InvalidObjectState...), never by its text."""
    import botocore.exceptions as bx
    from zfsglacier.stores._aws import translate
    err = translate(bx.ClientError({"Error": {"Code": "NoSuchUpload", "Message": "gone"}}, "CompleteMultipartUpload"),
                    "s3://b/p: complete upload of x")
    assert err.code == "NoSuchUpload" and err.exit_code == 10 and "NoSuchUpload" in str(err)
    denied = translate(bx.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject"), "put")
    assert denied.code == "AccessDenied" and "access denied" in str(denied)


def test_a_server_that_ignores_range_is_refused_without_reading_the_object(bucket):
    """A GET whose answer is longer than the range asked for (a server that ignores Range and
    sends the whole object, here moto asked without the header) is an error, decided from the
    answer's length before any of its body is read into the range's buffer."""
    data = os.urandom(2 * PART + 3)
    info = store_for(bucket).upload(io.BytesIO(data), {})
    store = store_for(bucket)
    store.client.meta.events.register("before-send.s3.GetObject",
                                      lambda request, **_: request.headers.__delitem__("Range"))
    with pytest.raises(IntegrityError, match=r"got more than \d+ bytes for part 1"):
        store.read_all(info.id, jobs=1)


@pytest.mark.parametrize("sent, got", [(10, 10), (7, 7), (11, 11), (4000, 11)])
def test_a_body_read_into_a_buffer_says_how_long_it_was(sent, got):
    """read_body_into through the public StreamingBody path (a body not on http.client: what is
    used where urllib3's layers are not the known ones): the count is exact, fewer when the body
    is short, and one more (no more is read) when it is longer than the buffer."""
    from botocore.response import StreamingBody
    from zfsglacier.stores._aws import read_body_into

    body = io.BytesIO(os.urandom(sent))
    buf = bytearray(10)
    n = read_body_into({"Body": StreamingBody(body, sent)}, memoryview(buf))
    assert n == got
    assert bytes(buf[:min(n, 10)]) == body.getvalue()[:min(n, 10)]
    assert body.tell() <= 11


@pytest.mark.parametrize("size", [1000, 2 * PART + 5], ids=["single", "multipart"])
def test_an_object_already_at_a_new_archive_key_is_refused_and_left_alone(bucket, s3, monkeypatch, size):
    """Writes carry If-None-Match: * (moto honours it, as AWS does): an object someone else put at
    the key a new upload was given is never overwritten, never deleted, and the upload fails
    saying so (here the key is taken on purpose; a real id is random)."""
    from zfsglacier.stores import s3 as s3_module

    store = store_for(bucket)
    archive_id = "20261203T000000Z-deadbeef"
    monkeypatch.setattr(s3_module, "new_archive_id", lambda: archive_id)
    foreign = os.urandom(777)
    s3.put_object(Bucket=bucket, Key=store.key(archive_id), Body=foreign)
    with pytest.raises(IntegrityError, match="already holds an object that is not this upload"):
        store.upload(io.BytesIO(os.urandom(size)), {})
    assert s3.get_object(Bucket=bucket, Key=store.key(archive_id))["Body"].read() == foreign
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")  # the parts were aborted
