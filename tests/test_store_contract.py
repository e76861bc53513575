"""The store contract (restic's backend test suite): every behaviour a store promises, written
once and run against each store there is: file://, S3 twice (moto, in DEEP_ARCHIVE so thaws are
real steps; and Ceph's radosgw, a real S3 server that lacks GetObjectAttributes, partNumber reads,
SHA-256 checksums and RestoreObject) and a vault (the strict stand-in, its clock advanced instead
of waited on).

A new store gets these tests by adding a ``Harness`` to ``HARNESSES``: how to open it, and the
few things only the test needs from the outside (damage a stored byte, count an interrupted
upload's parts, make a cold archive readable).  The per-store files keep only what one store
does and the others cannot (S3's checksum fallbacks, a vault's inventory, a directory's sidecar).
"""

import hashlib
import io
import itertools
import os
from dataclasses import dataclass
from typing import Callable

import boto3
import pytest
from moto.backends import get_backend
from moto.server import ThreadedMotoServer

from tests.helpers import aws_env, file_destination, upload_then_kill
from tests.servers.glacier_vault import GlacierStandIn
from zfsglacier.services.cost import prices
from zfsglacier.errors import (IntegrityError, NotFoundError, RestorePendingError, ResumeMismatchError, StoreError,
                              UsageError)
from zfsglacier.plumbing.journal import Journal
from zfsglacier.plumbing.parts import MiB
from zfsglacier.stores import ArchiveInfo, Properties, open_store

HOUR = 3600.0
DAMAGED_PART_3 = r"part 3|tree hash"  # the error names what failed (a vault checks ranges by tree hash)
CHECKSUMS = {"sha256", "sha256-composite", "treehash"}
_names = itertools.count(1)


@dataclass
class Harness:
    """One store under test and what the tests need to reach around it."""

    store: object
    part: int  # the part size it was opened with: tests write in these units
    options: dict  # open_store options (the kill -9 test opens it again in another process)
    stored_parts: Callable[[], int]  # parts the one interrupted upload has stored so far
    damage: Callable[[str, int], None]  # flip the byte at an offset of an archive, at rest
    thaw_done: Callable[[], None]  # let time pass until a requested thaw is done
    listing_ready: Callable[[], None]  # let time pass until list() can answer (an inventory)
    leftovers: Callable[[], list]  # what the store holds besides complete archives: must be [] after an abort

    keeps_upload_metadata: bool = True  # incomplete_uploads() reports what open_upload was given
    checks_each_range: bool = True  # the store names a checksum per range (RGW: only the whole's)
    serves_cold_at_once: bool = False  # a cold class is a label: read without a thaw (RGW)

    def readable(self, archive_id):
        """Thaw ``archive_id`` if the store is cold, so that it can be read."""
        if self.store.properties.cold:
            self.store.request_thaw(archive_id, "Standard")
            self.thaw_done()
        return archive_id

    def listed(self):
        self._fresh_inventory()
        return list(self.store.list())

    def stat(self, archive_id):
        self._fresh_inventory()
        return self.store.stat(archive_id)

    def _fresh_inventory(self):
        """A vault knows its archives from an inventory, made when asked and ready hours later:
        ask for one now, and let the hours pass."""
        if not self.store.properties.lists_at_once:
            self.store.request_inventory()
            self.listing_ready()


def _nothing():
    pass


@pytest.fixture(scope="module")
def servers():
    """moto's S3 and the vault stand-in, in this process on 127.0.0.1."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    standin = GlacierStandIn(delays={"Expedited": 0, "Standard": 4 * HOUR, "Bulk": 10 * HOUR,
                                     "inventory": 4 * HOUR})
    with aws_env(AWS_ENDPOINT_URL_S3=f"http://{host}:{port}", AWS_ENDPOINT_URL_GLACIER=standin.start()):
        yield standin
    standin.stop()
    moto.stop()


def file_harness(tmp_path, servers):
    options = {"part_size": MiB}
    url = file_destination(tmp_path / "arch")
    store = open_store(url, **options)

    def stored_parts():
        partials = list((tmp_path / "arch").glob("*.zg.partial"))
        return partials[0].stat().st_size // MiB if partials else 0

    def damage(archive_id, offset):
        with open(tmp_path / "arch" / f"{archive_id}.zg", "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0xFF]))

    def leftovers():
        return sorted(n for n in os.listdir(tmp_path / "arch") if not n.endswith((".zg", ".zg.json"))
                      and n != ".zfsglacier-destination")

    return Harness(store, MiB, options, stored_parts, damage, _nothing, _nothing, leftovers)


def _s3_parts_and_leftovers(s3, bucket, damage):
    """Harness fields shared by both S3 servers: stored_parts, damage, thaw_done, listing_ready, leftovers."""
    def stored_parts():
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if not uploads:
            return 0
        return len(s3.list_parts(Bucket=bucket, Key=uploads[0]["Key"],
                                 UploadId=uploads[0]["UploadId"]).get("Parts", []))

    def leftovers():
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        stray = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
                 if not o["Key"].endswith(".zg")]
        return [u["Key"] for u in uploads] + stray

    return stored_parts, damage, _nothing, _nothing, leftovers


def s3_harness(tmp_path, servers):
    bucket = f"zg-contract-{next(_names)}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    options = {"part_size": 5 * MiB, "storage_class": "DEEP_ARCHIVE"}  # S3's smallest part
    store = open_store(f"s3://{bucket}/backups", **options)


    def damage(archive_id, offset):  # moto keeps no checksums of its own: change its copy
        key = get_backend("s3")["123456789012"]["aws"].buckets[bucket].keys[f"backups/{archive_id}.zg"]
        rotten = bytearray(key.value)
        rotten[offset] ^= 0xFF
        key.value = bytes(rotten)


    # moto thaws at once; S3 lists an unfinished upload without its metadata (ListMultipartUploads has none)
    return Harness(store, 5 * MiB, options, *_s3_parts_and_leftovers(s3, bucket, damage),
                   keeps_upload_metadata=False)


def rgw_harness(tmp_path, servers, rgw):
    bucket = f"zg-contract-{next(_names)}"
    s3 = boto3.client("s3", endpoint_url=rgw.url)
    s3.create_bucket(Bucket=bucket)
    options = {"part_size": 5 * MiB, "storage_class": "DEEP_ARCHIVE", "endpoint": rgw.url}
    store = open_store(f"s3://{bucket}/backups", **options)


    def damage(archive_id, offset):
        """Flip the byte in the RADOS object that holds it (RGW keeps no checksum of its own)."""
        want = s3.get_object(Bucket=bucket, Key=f"backups/{archive_id}.zg",
                             Range=f"bytes={offset}-{offset + 31}")["Body"].read()
        for pool in rgw.run("rados", "lspools").split():
            for name in rgw.run("rados", "-p", pool, "ls").split("\n"):
                if f"{archive_id}.zg" not in name:
                    continue
                path = tmp_path / "rados-object"
                rgw.run("rados", "-p", pool, "get", name, str(path))
                blob = bytearray(path.read_bytes())
                at = blob.find(want)
                if at >= 0:
                    blob[at] ^= 0xFF
                    path.write_bytes(bytes(blob))
                    rgw.run("rados", "-p", pool, "put", name, str(path))
                    return
        raise AssertionError(f"no RADOS object of {archive_id} holds byte {offset}")


    return Harness(store, 5 * MiB, options, *_s3_parts_and_leftovers(s3, bucket, damage),
                   keeps_upload_metadata=False, checks_each_range=False, serves_cold_at_once=True)


def vault_harness(tmp_path, servers):
    name = f"zg-contract-{next(_names)}"
    glacier = boto3.client("glacier")
    glacier.create_vault(vaultName=name)
    options = {"part_size": MiB}
    store = open_store(f"glacier://{name}", **options)

    def stored_parts():
        ups = glacier.list_multipart_uploads(vaultName=name)["UploadsList"]
        if not ups:
            return 0
        return len(glacier.list_parts(vaultName=name, uploadId=ups[0]["MultipartUploadId"])["Parts"])

    def later():
        servers.clock.advance(4 * HOUR)

    def leftovers():
        return glacier.list_multipart_uploads(vaultName=name)["UploadsList"]

    return Harness(store, MiB, options, stored_parts, lambda i, o: servers.corrupt(name, i, offset=o), later, later,
                   leftovers)


HARNESSES = {"file": file_harness, "s3": s3_harness, "rgw": rgw_harness, "vault": vault_harness}


@pytest.fixture(params=sorted(HARNESSES))
def h(request, tmp_path, servers):
    if request.param == "rgw":
        return rgw_harness(tmp_path, servers, request.getfixturevalue("rgw"))
    return HARNESSES[request.param](tmp_path, servers)


def payload(size):
    return os.urandom(size)


# ---- what a store is

def test_properties_are_declared_and_true(h):
    p = h.store.properties
    assert isinstance(p, Properties) and p.checksum in CHECKSUMS
    assert p.price_class in prices()["classes"], "every price class has a row in the price table"
    assert 0 < p.min_part <= h.part <= p.max_part and p.max_parts > 1
    info = h.store.upload(io.BytesIO(payload(2 * h.part + 1)), {})
    assert info.checksum is None or info.checksum.startswith(p.checksum + ":")
    assert (info.state == "frozen") == p.cold and (info.state == "ready") == (not p.cold)
    assert h.store.price_class(info.storage_class) in prices()["classes"]
    if p.hot_options:
        hot = open_store(h.store.url, **{**h.options, **p.hot_options})
        assert not hot.properties.cold and hot.properties.hot_options is None and hot.url == h.store.url


# ---- round trips

def test_round_trip_in_several_parts_with_metadata_and_listing(h):
    data = payload(3 * h.part + 1234)
    info = h.store.upload(io.BytesIO(data), {"dataset": "tank/fs", "snapshot": "s1"}, jobs=3)
    assert isinstance(info, ArchiveInfo) and info.size == len(data)
    assert h.stat(info.id).metadata == {"dataset": "tank/fs", "snapshot": "s1"}
    assert h.store.read_all(h.readable(info.id), jobs=3) == data
    [row] = [a for a in h.listed() if a.id == info.id]
    assert row.size == len(data) and row.metadata["snapshot"] == "s1"
    assert h.store.incomplete_uploads() == [] and h.leftovers() == []


def test_small_and_empty_streams(h):
    """An empty stream round-trips, or (a vault: Glacier holds no empty archive) is refused in
    one line before anything is stored.  zfsglacier's archives are never empty (a header)."""
    for data in (b"hi", b""):
        try:
            info = h.store.upload(io.BytesIO(data), {})
        except StoreError as err:
            assert not data and "empty" in str(err) and h.leftovers() == []
            continue
        assert h.stat(info.id).size == len(data)
        assert h.store.read_all(h.readable(info.id)) == data


def test_a_full_read_says_which_checksum_it_verified(h):
    """open_read's result names the store checksum it checked the whole against (``verifies``),
    so a caller holding that checksum from the upload need not hash again; a resumed read
    checks every range but not the whole, and says so with None."""
    data = payload(2 * h.part + 9)
    info = h.store.upload(io.BytesIO(data), {})
    h.readable(info.id)
    with h.store.open_read(info.id) as r:
        assert r.read() == data
        if h.stat(info.id).checksum is None:  # a server that keeps MD5 ETags only (RGW): the whole
            assert r.verifies is None         # was checked by them, but no SHA-256 vouches for it
        else:
            assert r.verifies is not None and r.verifies == h.stat(info.id).checksum
    with h.store.open_read(info.id, recorded=info) as r:  # what a catalog holds
        assert r.read() == data
        assert r.verifies in (info.checksum, f"sha256:{info.sha256}") and r.verifies is not None
    with h.store.open_read(info.id, start=h.part + 3) as r:
        assert r.read() == data[h.part + 3:]
        assert r.verifies is None


# ---- cold storage

def test_cold_archives_are_read_only_after_a_thaw(h):
    info = h.store.upload(io.BytesIO(payload(h.part + 10)), {})
    if not h.store.properties.cold:
        assert h.store.request_thaw(info.id).state == "ready" and h.store.thaw_status(info.id).state == "ready"
        return
    if h.serves_cold_at_once:  # no RestoreObject, and GET serves the class: found out, not assumed
        assert len(h.store.read_all(info.id)) == h.part + 10
        status = h.store.request_thaw(info.id, "Standard")
        assert status.state == "ready" and "RestoreObject" in status.detail
        return
    assert h.store.thaw_status(info.id).state == "frozen"
    with pytest.raises(RestorePendingError) as pending:
        h.store.open_read(info.id)
    assert pending.value.thaw == (h.store.url, info.id)  # the commands say how to ask for a thaw
    with pytest.raises(UsageError, match="unknown retrieval tier"):
        h.store.request_thaw(info.id, "Instant")
    status = h.store.request_thaw(info.id, "Standard")
    assert status.state in ("thawing", "thawed") and status.id == info.id
    assert h.store.request_thaw(info.id, "Standard").state in ("thawing", "thawed")  # asking again is fine
    h.thaw_done()
    assert h.store.thaw_status(info.id).state == "thawed"
    assert len(h.store.read_all(info.id)) == h.part + 10


# ---- uploads that do not finish

def test_an_upload_that_fails_leaves_nothing(h):
    with pytest.raises(RuntimeError):
        with h.store.open_upload({}) as up:
            up.write(payload(2 * h.part + 1))  # parts sent
            raise RuntimeError("zfs send died")
    assert h.store.incomplete_uploads() == [] and h.leftovers() == []
    assert h.listed() == []


def test_a_started_upload_is_incomplete_never_listed_and_abort_frees_it(h):
    up = h.store.open_upload({"k": "v"})
    up.write(payload(3 * h.part))  # two parts sent, the third held: the upload has begun
    [inc] = h.store.incomplete_uploads()
    assert inc.metadata == ({"k": "v"} if h.keeps_upload_metadata else {})
    assert h.listed() == []
    up.abort()
    assert h.store.incomplete_uploads() == [] and h.leftovers() == []


def test_resume_after_kill_9_sends_only_missing_parts(h):
    data = payload(5 * h.part + 4321)
    # The killed run sends one part at a time.  With two at once, one full-suite run saw S3 (moto)
    # resume reuse 2 of the 3 parts listed (the third sent again: safe, but not this test's claim);
    # 30 runs of that alone did not repeat it, and the cause is not known.
    upload_then_kill(h.store.url, h.options, data[:3 * h.part + 1], h.stored_parts, want=3, jobs=1)
    [inc] = h.store.incomplete_uploads()
    assert inc.parts >= 3 and inc.metadata == ({"dataset": "tank/fs"} if h.keeps_upload_metadata else {})
    assert h.listed() == []
    up = h.store.open_resume(jobs=2)
    up.write(data)
    info = up.commit()
    assert up.stats["parts_reused"] == inc.parts and up.stats["parts_sent"] == 6 - inc.parts
    assert h.stat(info.id).metadata == {"dataset": "tank/fs"}
    assert h.store.read_all(h.readable(info.id)) == data
    assert h.store.incomplete_uploads() == [] and h.leftovers() == []


# ---- journaled uploads (a resumable zg-backup, SPEC section 11): the same bytes again, and
# never other bytes where some may have left

def _killed_journaled(h, tmp_path, data):
    """A journaled upload of ``data`` killed -9 once three parts are stored; its journal, read back."""
    path = tmp_path / "upload.journal"
    upload_then_kill(h.store.url, h.options, data[:3 * h.part + 1], h.stored_parts, want=3, jobs=1, journal=path)
    journal = Journal.load(str(path))
    assert journal.ref is not None and len(journal.parts) >= 3  # every stored part was journaled first
    assert journal.meta == {"test": True} and (path.stat().st_mode & 0o777) == 0o600
    return journal


def _sent_parts(monkeypatch, h):
    """Record the number of every part a session of this store sends (wrapping the class)."""
    sent = []
    cls = type(h.store._new_session({}, None))
    original = cls.send_part

    def send_part(self, part):
        sent.append(part.number)
        return original(self, part)
    monkeypatch.setattr(cls, "send_part", send_part)
    return sent


def test_journaled_upload_killed_resumes_sending_only_missing_parts(h, tmp_path):
    data = payload(5 * h.part + 4321)
    journal = _killed_journaled(h, tmp_path, data)
    [inc] = h.store.incomplete_uploads()
    assert inc.ref == journal.ref
    up = h.store.open_continued({"dataset": "tank/fs"}, journal, jobs=2)
    up.write(data)
    info = up.commit()
    assert up.stats["parts_reused"] == inc.parts and up.stats["parts_sent"] == 6 - inc.parts
    assert h.store.read_all(h.readable(info.id)) == data
    assert h.store.incomplete_uploads() == [] and h.leftovers() == []
    assert sorted(journal.parts) == [n * h.part for n in range(6)]  # the whole stream, journaled


def test_journaled_resume_never_sends_other_bytes_where_some_may_have_left(h, tmp_path, monkeypatch):
    data = payload(5 * h.part + 4321)
    journal = _killed_journaled(h, tmp_path, data)
    # Part 5 was encrypted (journaled) by a run that was killed while sending it: the store does
    # not list it, but its bytes may have reached the server.
    journal.admit(4 * h.part, h.part, hashlib.sha256(data[4 * h.part:5 * h.part]).digest())
    other = data[:4 * h.part] + payload(h.part) + data[5 * h.part:]
    sent = _sent_parts(monkeypatch, h)
    up = h.store.open_continued({"dataset": "tank/fs"}, journal, jobs=1)
    with pytest.raises(ResumeMismatchError, match="differ from what an earlier run may already have sent"):
        up.write(other)
        up.commit()
    assert 5 not in sent  # refused before it was handed to the store
    up.abort()
    assert h.store.incomplete_uploads() == [] and h.leftovers() == []


def test_journaled_resume_refuses_a_journal_that_lost_stored_parts(h, tmp_path):
    data = payload(5 * h.part + 4321)
    journal = _killed_journaled(h, tmp_path, data)
    journal.close()
    lines = open(journal.path, "rb").read().split(b"\n")  # lines cut from the end: part 3 forgotten
    open(journal.path, "wb").write(b"\n".join(line for line in lines if b'"part":[%d,' % (2 * h.part) not in line))
    forgetful = Journal.load(journal.path)
    up = h.store.open_continued({"dataset": "tank/fs"}, forgetful, jobs=1)
    with pytest.raises(ResumeMismatchError, match="does not record"):
        up.write(data)
        up.commit()
    assert len(h.store.incomplete_uploads()) == 1  # refused, not freed: the caller decides
    h.store.discard_incomplete(forgetful.ref)


def test_journaled_upload_whose_upload_is_gone_starts_one_and_still_compares(h, tmp_path):
    data = payload(5 * h.part + 4321)
    journal = _killed_journaled(h, tmp_path, data)
    h.store.discard_incomplete(journal.ref)  # freed meanwhile (zg-rm --incomplete, a lifecycle rule)
    up = h.store.open_continued({"dataset": "tank/fs"}, journal, jobs=2)
    up.write(data)
    info = up.commit()
    assert up.stats["parts_reused"] == 0 and h.store.read_all(h.readable(info.id)) == data
    bad = h.store.open_continued({"dataset": "tank/fs"}, journal, jobs=1)  # the same journal, other bytes
    with pytest.raises(ResumeMismatchError):
        bad.write(payload(2 * h.part))
        bad.commit()
    bad.abort()


def test_resume_refuses_other_input_and_discard_frees_the_upload(h):
    up = h.store.open_upload({})
    up.write(payload(2 * h.part + 1))
    up._pipeline.cancel()  # as if killed: the parts stay, nothing completes
    up.session.release()
    with pytest.raises(NotFoundError, match="starts with this input"):
        h.store.resume_upload(io.BytesIO(payload(2 * h.part + 1)))
    [inc] = h.store.incomplete_uploads()  # refusing kept it
    h.store.discard_incomplete(inc.ref)
    assert h.store.incomplete_uploads() == [] and h.leftovers() == []


def test_resume_with_nothing_to_resume(h):
    with pytest.raises(NotFoundError, match="no incomplete upload"):
        h.store.open_resume()


def test_metadata_is_checked_before_anything_is_stored(h):
    with pytest.raises(UsageError, match="metadata key"):
        h.store.open_upload({"Bad Key": "x"})
    with pytest.raises(UsageError, match="printable ASCII"):
        h.store.open_upload({"k": "caf\u00e9"})
    limit = h.store.properties.metadata_limit
    if limit is not None:
        with pytest.raises(UsageError, match=str(limit)):
            h.store.open_upload({"notes": "x" * limit})
    assert h.store.incomplete_uploads() == [] and h.leftovers() == []


# ---- reads that must not trust the store

def test_damage_at_rest_is_caught_on_read_after_the_good_parts(h):
    data = payload(3 * h.part)
    info = h.store.upload(io.BytesIO(data), {})
    h.damage(info.id, 2 * h.part + 5)
    h.readable(info.id)
    with h.store.open_read(info.id, jobs=2) as r:
        assert r.read(2 * h.part) == data[:2 * h.part]  # parts before the damage are fine
        with pytest.raises(IntegrityError, match=DAMAGED_PART_3 if h.checks_each_range else "checksum"):
            r.read()
    if not h.checks_each_range:  # the catalog's SHA-256 catches it too, before the last range
        with h.store.open_read(info.id, recorded=info) as r:
            with pytest.raises(IntegrityError, match="checksum"):
                r.read()


def test_read_resumes_at_an_offset_still_verifying_every_range(h):
    data = payload(3 * h.part + 9)
    info = h.store.upload(io.BytesIO(data), {})
    assert h.store.open_read(h.readable(info.id), start=h.part + 3).read() == data[h.part + 3:]
    assert h.store.open_read(info.id, start=len(data)).read() == b""
    h.damage(info.id, 2 * h.part + 1)
    if not h.checks_each_range:  # nothing names a range's checksum: the caller checks the whole it
        with h.store.open_read(info.id, start=2 * h.part) as r:  # assembles (zg-fetch --resume does)
            assert r.read() != data[2 * h.part:] and r.verifies is None
        return
    with pytest.raises(IntegrityError, match=DAMAGED_PART_3):
        h.store.open_read(info.id, start=2 * h.part).read()


def test_delete_and_missing_archives(h):
    info = h.store.upload(io.BytesIO(b"gone soon"), {})
    h.store.delete(info.id)
    for op in (h.stat, h.store.delete, h.store.request_thaw):
        with pytest.raises(NotFoundError):
            op(info.id)
    if h.store.properties.lists_at_once:
        for op in (h.store.open_read, h.store.thaw_status):
            with pytest.raises(NotFoundError):
                op(info.id)
    else:  # a vault cannot ask about one archive: reads and thaw_status know its jobs only, so
        with pytest.raises(RestorePendingError):  # they say "request a thaw", and request_thaw
            h.store.open_read(info.id)             # is where the vault says it is gone (above)
        assert h.store.thaw_status(info.id).state == "frozen"
    for bad in ("../etc/passwd", "a/b", ""):
        with pytest.raises(NotFoundError, match="not a valid archive id"):
            h.stat(bad)
