"""The Glacier vault stand-in, driven by the real boto3 client, refuses what AWS refuses.

Also checks zfsglacier.treehash against botocore's independent implementation, since both the
stand-in and the real vault store rely on it.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.utils import calculate_tree_hash

from tests.servers.glacier_vault import GlacierStandIn
from zfsglacier.plumbing.treehash import MIB, TreeHasher, combine, is_tree_hash_aligned, tree_hash

REPO = Path(__file__).resolve().parent.parent
HOUR = 3600.0


@pytest.fixture
def standin():
    """A stand-in whose Bulk tier never finishes by itself: tests advance its clock instead."""
    server = GlacierStandIn(delays={"Expedited": 0.05, "Standard": 0.1, "Bulk": 5 * HOUR,
                                    "inventory": 4 * HOUR})
    server.start()
    yield server
    server.stop()


def make_client(url, **config):
    config.setdefault("retries", {"mode": "standard", "total_max_attempts": 1})
    return boto3.client(
        "glacier", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing", config=Config(**config),
    )


@pytest.fixture
def glacier(standin):
    client = make_client(standin.url)
    client.create_vault(vaultName="vault")
    return client


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def data_of(size, seed=1):
    """Deterministic bytes that differ in every MiB, so swapped ranges cannot go unnoticed."""
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 2048
    return bytes(out[:size])


def wait_until_done(glacier, job_id, limit=10.0):
    """Poll DescribeJob until it completes; bounded, and the bound is not what is tested."""
    deadline = time.monotonic() + limit
    while True:
        job = glacier.describe_job(vaultName="vault", jobId=job_id)
        if job["Completed"] or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def retrieve(glacier, standin, archive_id, **params):
    """Start a Bulk retrieval and finish it by advancing the stand-in's clock."""
    job_id = glacier.initiate_job(vaultName="vault", jobParameters={
        "Type": "archive-retrieval", "ArchiveId": archive_id, "Tier": "Bulk", **params})["jobId"]
    standin.clock.advance(5 * HOUR)
    return job_id


def output(glacier, job_id, rng=None):
    kw = {"range": rng} if rng else {}
    resp = glacier.get_job_output(vaultName="vault", jobId=job_id, **kw)
    return resp, resp["body"].read()


# --------------------------------------------------------------------------- tree hash
@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + 5, 8 * MIB, 9 * MIB + 3])
def test_tree_hash_matches_botocore(size):
    data = os.urandom(size)
    expected = calculate_tree_hash(io.BytesIO(data))
    hasher = TreeHasher(keep_leaves=True)
    for i in range(0, size, 300_007):  # slices that straddle leaf boundaries
        hasher.update(data[i : i + 300_007])
    assert tree_hash(data).hex() == expected
    assert hasher.hexdigest() == expected
    assert combine(hasher.leaves()).hex() == expected


def test_combining_part_hashes_gives_the_archive_hash():
    data = os.urandom(7 * MIB + 11)
    part = 2 * MIB
    parts = [tree_hash(data[i : i + part]) for i in range(0, len(data), part)]
    assert combine(parts).hex() == calculate_tree_hash(io.BytesIO(data))


def test_tree_hash_alignment_matches_the_nodes_of_the_tree():
    """Independent check: build every level explicitly and collect each node's chunk range."""
    for n in range(1, 12):
        level = [(i, i + 1) for i in range(n)]
        nodes = set(level)
        while len(level) > 1:
            level = [(level[i][0], level[i + 1][1]) if i + 1 < len(level) else level[i]
                     for i in range(0, len(level), 2)]
            nodes.update(level)
        total = n * MIB - 1000  # last chunk partial
        for a in range(n):
            for b in range(a + 1, n + 1):
                end = min(b * MIB, total) - 1
                assert is_tree_hash_aligned(a * MIB, end, total) == ((a, b) in nodes), (n, a, b)
    six_and_a_half = 6 * MIB + MIB // 2  # the example in AWS's documentation
    assert not is_tree_hash_aligned(1 * MIB, 3 * MIB - 1, six_and_a_half)
    assert is_tree_hash_aligned(2 * MIB, 4 * MIB - 1, six_and_a_half)
    assert not is_tree_hash_aligned(5, MIB - 1, six_and_a_half)


# --------------------------------------------------------------------------- vaults, auth
def test_vault_lifecycle_and_errors(standin, glacier):
    assert glacier.describe_vault(vaultName="vault")["NumberOfArchives"] == 0
    for name in ("b", "a"):
        glacier.create_vault(vaultName=name)
    first = glacier.list_vaults(limit="2")
    assert [v["VaultName"] for v in first["VaultList"]] == ["a", "b"]
    rest = glacier.list_vaults(marker=first["Marker"])
    assert [v["VaultName"] for v in rest["VaultList"]] == ["vault"] and "Marker" not in rest
    with pytest.raises(ClientError) as e:
        glacier.describe_vault(vaultName="missing")
    assert error_code(e) == "ResourceNotFoundException"
    for bad in ("bad/name", "bad name!", "x" * 256):
        with pytest.raises(ClientError) as e:
            glacier.create_vault(vaultName=bad)
        assert error_code(e) == "InvalidParameterValueException", bad
    archive = glacier.upload_archive(vaultName="vault", body=b"x")["archiveId"]
    with pytest.raises(ClientError) as e:
        glacier.delete_vault(vaultName="vault")
    assert error_code(e) == "InvalidParameterValueException"
    glacier.delete_archive(vaultName="vault", archiveId=archive)
    with pytest.raises(ClientError) as e:
        glacier.delete_archive(vaultName="vault", archiveId=archive)
    assert error_code(e) == "ResourceNotFoundException"
    glacier.delete_vault(vaultName="vault")
    assert "vault" not in [v["VaultName"] for v in glacier.list_vaults()["VaultList"]]


def test_unsigned_requests_are_refused(standin, glacier):
    unsigned = make_client(standin.url, signature_version=botocore.UNSIGNED)
    with pytest.raises(ClientError) as e:
        unsigned.describe_vault(vaultName="vault")
    assert error_code(e) == "MissingAuthenticationTokenException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# --------------------------------------------------------------------------- single upload
def test_single_upload_then_retrieval_job_waits_and_completes(standin, glacier):
    data = data_of(3 * MIB + 5)
    up = glacier.upload_archive(vaultName="vault", body=data, archiveDescription="snap@1")
    assert up["checksum"] == tree_hash(data).hex()
    assert up["location"].endswith("/vaults/vault/archives/" + up["archiveId"])
    vault = glacier.describe_vault(vaultName="vault")
    assert (vault["NumberOfArchives"], vault["SizeInBytes"]) == (1, len(data))

    job_id = glacier.initiate_job(vaultName="vault", jobParameters={
        "Type": "archive-retrieval", "ArchiveId": up["archiveId"], "Tier": "Standard"})["jobId"]
    job = glacier.describe_job(vaultName="vault", jobId=job_id)
    assert (job["Completed"], job["StatusCode"]) == (False, "InProgress")
    with pytest.raises(ClientError) as e:
        glacier.get_job_output(vaultName="vault", jobId=job_id)
    assert error_code(e) == "InvalidParameterValueException"

    job = wait_until_done(glacier, job_id)
    assert (job["Completed"], job["StatusCode"], job["Tier"]) == (True, "Succeeded", "Standard")
    assert job["SHA256TreeHash"] == job["ArchiveSHA256TreeHash"] == up["checksum"]
    resp, body = output(glacier, job_id)
    assert body == data and resp["status"] == 200
    assert resp["checksum"] == up["checksum"]
    assert resp["archiveDescription"] == "snap@1"


def test_upload_with_wrong_hashes_is_refused(standin, glacier):
    with pytest.raises(ClientError) as e:
        glacier.upload_archive(vaultName="vault", body=b"data", checksum="0" * 64)
    assert error_code(e) == "InvalidParameterValueException"

    def spoil_content_sha(request, **_):
        request.headers.replace_header("x-amz-content-sha256", "1" * 64)

    glacier.meta.events.register("before-sign.glacier.UploadArchive", spoil_content_sha)
    with pytest.raises(ClientError) as e:
        glacier.upload_archive(vaultName="vault", body=b"data")
    assert error_code(e) == "InvalidParameterValueException"
    assert standin.archive_ids("vault") == []


@pytest.mark.parametrize("description", ["x" * 1025, "tab\there", "caf\u00e9"])
def test_bad_descriptions_are_refused(glacier, description):
    with pytest.raises(ClientError) as e:
        glacier.upload_archive(vaultName="vault", body=b"x", archiveDescription=description)
    assert error_code(e) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        glacier.initiate_multipart_upload(vaultName="vault", partSize=str(MIB),
                                          archiveDescription=description)
    assert error_code(e) == "InvalidParameterValueException"


def test_longest_description_is_accepted(glacier):
    description = "".join(chr(32 + i % 95) for i in range(1024))
    archive = glacier.upload_archive(vaultName="vault", body=b"x", archiveDescription=description)
    assert archive["archiveId"]


# --------------------------------------------------------------------------- multipart
def start_upload(glacier, part_size=MIB, description="multi"):
    return glacier.initiate_multipart_upload(
        vaultName="vault", partSize=str(part_size), archiveDescription=description)["uploadId"]


def put_part(glacier, upload_id, data, start, **kw):
    return glacier.upload_multipart_part(
        vaultName="vault", uploadId=upload_id, body=data,
        range=f"bytes {start}-{start + len(data) - 1}/*", **kw)


def test_multipart_upload_pagination_and_idempotent_complete(standin, glacier):
    data = data_of(5 * MIB // 2)
    upload_id = start_upload(glacier)
    hashes = {}
    for start in (2 * MIB, 0, MIB):  # any order
        resp = put_part(glacier, upload_id, data[start : start + MIB], start)
        hashes[start] = resp["checksum"]
        assert resp["checksum"] == tree_hash(data[start : start + MIB]).hex()

    uploads = glacier.list_multipart_uploads(vaultName="vault")["UploadsList"]
    assert [(u["MultipartUploadId"], u["PartSizeInBytes"], u["ArchiveDescription"])
            for u in uploads] == [(upload_id, MIB, "multi")]
    page1 = glacier.list_parts(vaultName="vault", uploadId=upload_id, limit="2")
    page2 = glacier.list_parts(vaultName="vault", uploadId=upload_id, marker=page1["Marker"])
    listed = page1["Parts"] + page2["Parts"]
    assert [p["RangeInBytes"] for p in listed] == [
        f"0-{MIB - 1}", f"{MIB}-{2 * MIB - 1}", f"{2 * MIB}-{len(data) - 1}"]
    assert [p["SHA256TreeHash"] for p in listed] == [hashes[s] for s in (0, MIB, 2 * MIB)]
    assert page2.get("Marker") is None

    whole = combine([bytes.fromhex(hashes[s]) for s in (0, MIB, 2 * MIB)]).hex()
    done = glacier.complete_multipart_upload(vaultName="vault", uploadId=upload_id,
                                             archiveSize=str(len(data)), checksum=whole)
    assert done["checksum"] == whole == tree_hash(data).hex()
    again = glacier.complete_multipart_upload(vaultName="vault", uploadId=upload_id,
                                              archiveSize=str(len(data)), checksum=whole)
    assert again["archiveId"] == done["archiveId"]
    assert standin.archive_ids("vault") == [done["archiveId"]]
    assert glacier.list_multipart_uploads(vaultName="vault")["UploadsList"] == []
    assert output(glacier, retrieve(glacier, standin, done["archiveId"]))[1] == data


def test_part_with_wrong_tree_hash_is_refused(glacier):
    upload_id = start_upload(glacier)
    with pytest.raises(ClientError) as e:
        put_part(glacier, upload_id, data_of(MIB), 0, checksum="ab" * 32)
    assert error_code(e) == "InvalidParameterValueException"
    assert glacier.list_parts(vaultName="vault", uploadId=upload_id)["Parts"] == []


@pytest.mark.parametrize("start,length", [
    (MIB // 2, MIB),       # not on a part boundary
    (0, MIB + 1),          # longer than the part size
    (10_000 * MIB, MIB),   # part index 10,000: one too many
])
def test_misaligned_or_oversized_parts_are_refused(glacier, start, length):
    upload_id = start_upload(glacier)
    with pytest.raises(ClientError) as e:
        put_part(glacier, upload_id, data_of(length), start)
    assert error_code(e) == "InvalidParameterValueException"


def test_content_range_must_match_the_body(glacier):
    upload_id = start_upload(glacier)
    with pytest.raises(ClientError) as e:
        glacier.upload_multipart_part(vaultName="vault", uploadId=upload_id, body=b"x" * 10,
                                      range="bytes 0-19/*")
    assert error_code(e) == "InvalidParameterValueException"


@pytest.mark.parametrize("part_size", [3 * MIB, MIB // 2, MIB + 1, 8 << 30, 0])
def test_part_size_must_be_a_power_of_two_between_1mib_and_4gib(glacier, part_size):
    with pytest.raises(ClientError) as e:
        start_upload(glacier, part_size)
    assert error_code(e) == "InvalidParameterValueException"


def test_largest_part_size_is_accepted(glacier):
    assert start_upload(glacier, 4 << 30)


def test_complete_checks_size_hash_and_coverage(standin, glacier):
    data = data_of(3 * MIB)
    upload_id = start_upload(glacier)
    right = tree_hash(data).hex()

    def complete(size=len(data), checksum=right):
        return glacier.complete_multipart_upload(vaultName="vault", uploadId=upload_id,
                                                 archiveSize=str(size), checksum=checksum)

    put_part(glacier, upload_id, data[:MIB], 0)
    put_part(glacier, upload_id, data[2 * MIB :], 2 * MIB)
    for kwargs in ({}, {"size": len(data) + 1}):  # part 1 missing
        with pytest.raises(ClientError) as e:
            complete(**kwargs)
        assert error_code(e) == "InvalidParameterValueException"

    put_part(glacier, upload_id, data[MIB : MIB + 100], MIB)  # a short part that is not last
    with pytest.raises(ClientError) as e:
        complete(size=2 * MIB + 100)
    assert error_code(e) == "InvalidParameterValueException"

    put_part(glacier, upload_id, data[MIB : 2 * MIB], MIB)  # re-uploading a part replaces it
    for kwargs in ({"size": len(data) - 1}, {"checksum": tree_hash(data[:-1]).hex()}):
        with pytest.raises(ClientError) as e:
            complete(**kwargs)
        assert error_code(e) == "InvalidParameterValueException"
    assert standin.archive_ids("vault") == []
    assert len(glacier.list_parts(vaultName="vault", uploadId=upload_id)["Parts"]) == 3
    archive_id = complete()["archiveId"]
    assert output(glacier, retrieve(glacier, standin, archive_id))[1] == data


def test_abort_removes_the_upload(glacier):
    upload_id = start_upload(glacier)
    put_part(glacier, upload_id, data_of(MIB), 0)
    glacier.abort_multipart_upload(vaultName="vault", uploadId=upload_id)
    for call in (lambda: glacier.list_parts(vaultName="vault", uploadId=upload_id),
                 lambda: put_part(glacier, upload_id, data_of(MIB), MIB),
                 lambda: glacier.abort_multipart_upload(vaultName="vault", uploadId=upload_id)):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "ResourceNotFoundException"


def test_parallel_parts_and_ranged_download_like_a_store(standin, glacier):
    """The pattern the vault store uses: parallel 4 MiB parts, then 4 MiB verified ranges."""
    part = 4 * MIB
    data = data_of(41 * MIB + 123, seed=7)
    upload_id = start_upload(glacier, part)
    starts = range(0, len(data), part)
    with ThreadPoolExecutor(4) as pool:
        hashes = list(pool.map(lambda s: put_part(glacier, upload_id, data[s : s + part], s)
                               ["checksum"], starts))
    whole = combine([bytes.fromhex(h) for h in hashes]).hex()
    archive_id = glacier.complete_multipart_upload(
        vaultName="vault", uploadId=upload_id, archiveSize=str(len(data)), checksum=whole)["archiveId"]
    job_id = retrieve(glacier, standin, archive_id)
    got = bytearray()
    for start in starts:
        end = min(start + part, len(data)) - 1
        resp, body = output(glacier, job_id, f"bytes={start}-{end}")
        assert resp["status"] == 206 and resp["contentRange"] == f"bytes {start}-{end}/{len(data)}"
        assert resp["checksum"] == tree_hash(body).hex()
        got += body
    assert bytes(got) == data


# --------------------------------------------------------------------------- ranges, checksums
SIX_AND_A_HALF = 6 * MIB + MIB // 2


@pytest.fixture
def archive(glacier):
    data = data_of(SIX_AND_A_HALF, seed=3)
    return data, glacier.upload_archive(vaultName="vault", body=data)["archiveId"]


def test_ranged_output_sends_tree_hash_only_when_tree_aligned(standin, glacier, archive):
    data, archive_id = archive
    job_id = retrieve(glacier, standin, archive_id)

    resp, body = output(glacier, job_id, f"bytes={2 * MIB}-{4 * MIB - 1}")
    assert body == data[2 * MIB : 4 * MIB] and resp["status"] == 206
    assert resp["checksum"] == tree_hash(body).hex()

    resp, body = output(glacier, job_id, f"bytes={6 * MIB}-")  # to the end
    assert body == data[6 * MIB :] and resp["checksum"] == tree_hash(body).hex()

    resp, body = output(glacier, job_id, f"bytes={MIB}-{3 * MIB - 1}")  # MiB- but not tree-aligned
    assert body == data[MIB : 3 * MIB]
    assert "checksum" not in resp

    for bad in ("bytes=100-200", f"bytes=0-{MIB}", f"bytes={MIB}-{SIX_AND_A_HALF}", "0-5"):
        with pytest.raises(ClientError) as e:
            output(glacier, job_id, bad)
        assert error_code(e) == "InvalidParameterValueException", bad


def test_retrieval_byte_range(standin, glacier, archive):
    data, archive_id = archive
    aligned = retrieve(glacier, standin, archive_id, RetrievalByteRange=f"{2 * MIB}-{4 * MIB - 1}")
    job = glacier.describe_job(vaultName="vault", jobId=aligned)
    assert job["RetrievalByteRange"] == f"{2 * MIB}-{4 * MIB - 1}"
    assert job["SHA256TreeHash"] == tree_hash(data[2 * MIB : 4 * MIB]).hex()
    resp, body = output(glacier, aligned)
    assert body == data[2 * MIB : 4 * MIB] and resp["checksum"] == job["SHA256TreeHash"]
    resp, body = output(glacier, aligned, f"bytes={MIB}-")  # second MiB of the job output
    assert body == data[3 * MIB : 4 * MIB] and resp["checksum"] == tree_hash(body).hex()

    unaligned = retrieve(glacier, standin, archive_id, RetrievalByteRange=f"{MIB}-{3 * MIB - 1}")
    assert glacier.describe_job(vaultName="vault", jobId=unaligned).get("SHA256TreeHash") is None
    resp, body = output(glacier, unaligned)
    assert body == data[MIB : 3 * MIB] and "checksum" not in resp

    for bad in ("1-1048576", f"0-{MIB}", f"0-{SIX_AND_A_HALF}", "abc"):
        with pytest.raises(ClientError) as e:
            glacier.initiate_job(vaultName="vault", jobParameters={
                "Type": "archive-retrieval", "ArchiveId": archive_id, "RetrievalByteRange": bad})
        assert error_code(e) == "InvalidParameterValueException", bad


def test_job_parameters_are_checked(glacier, archive):
    _, archive_id = archive
    cases = [
        ({"Type": "archive-retrieval", "ArchiveId": archive_id, "Tier": "Fast"},
         "InvalidParameterValueException"),
        ({"Type": "archive-retrieval", "ArchiveId": "nope"}, "ResourceNotFoundException"),
        ({"Type": "archive-retrieval"}, "MissingParameterValueException"),
        ({"Type": "archive-retrieval", "ArchiveId": archive_id, "Description": "x" * 1025},
         "InvalidParameterValueException"),
        ({"Type": "frobnicate"}, "InvalidParameterValueException"),
    ]
    for params, code in cases:
        with pytest.raises(ClientError) as e:
            glacier.initiate_job(vaultName="vault", jobParameters=params)
        assert error_code(e) == code, params


def test_stored_rot_is_visible_through_the_checksum(standin, glacier, archive):
    data, archive_id = archive
    standin.corrupt("vault", archive_id, offset=5 * MIB + 17)
    resp, body = output(glacier, retrieve(glacier, standin, archive_id))
    assert body != data and resp["checksum"] != tree_hash(body).hex()
    assert resp["checksum"] == tree_hash(data).hex()


# --------------------------------------------------------------------------- time: tiers, expiry
def test_job_output_expires_after_24_hours(standin, glacier, archive):
    _, archive_id = archive
    job_id = glacier.initiate_job(vaultName="vault", jobParameters={
        "Type": "archive-retrieval", "ArchiveId": archive_id, "Tier": "Bulk"})["jobId"]
    assert not glacier.describe_job(vaultName="vault", jobId=job_id)["Completed"]
    listed = glacier.list_jobs(vaultName="vault", completed="false")["JobList"]
    assert [j["JobId"] for j in listed] == [job_id]

    standin.clock.advance(5 * HOUR)
    job = glacier.describe_job(vaultName="vault", jobId=job_id)
    assert job["Completed"] and job["CompletionDate"] >= job["CreationDate"]
    assert [j["JobId"] for j in glacier.list_jobs(vaultName="vault", statuscode="Succeeded")
            ["JobList"]] == [job_id]
    standin.clock.advance(23 * HOUR)
    assert len(output(glacier, job_id, f"bytes=0-{MIB - 1}")[1]) == MIB  # still there

    standin.clock.advance(1 * HOUR + 1)
    for call in (lambda: glacier.describe_job(vaultName="vault", jobId=job_id),
                 lambda: glacier.get_job_output(vaultName="vault", jobId=job_id)):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "ResourceNotFoundException"
    assert glacier.list_jobs(vaultName="vault")["JobList"] == []


def test_list_jobs_pages_and_filters(standin, glacier, archive):
    _, archive_id = archive
    ids = [glacier.initiate_job(vaultName="vault", jobParameters={
        "Type": "archive-retrieval", "ArchiveId": archive_id, "Tier": "Bulk"})["jobId"]
        for _ in range(3)]
    page = glacier.list_jobs(vaultName="vault", limit="2")
    rest = glacier.list_jobs(vaultName="vault", limit="2", marker=page["Marker"])
    assert [j["JobId"] for j in page["JobList"] + rest["JobList"]] == ids
    assert glacier.list_jobs(vaultName="vault", completed="true")["JobList"] == []
    for bad in ({"limit": "0"}, {"marker": "unknown"}, {"statuscode": "Done"}):
        with pytest.raises(ClientError) as e:
            glacier.list_jobs(vaultName="vault", **bad)
        assert error_code(e) == "InvalidParameterValueException", bad


# --------------------------------------------------------------------------- inventory
def test_inventory_lists_archives_with_descriptions(standin, glacier):
    uploaded = {}
    for i, size in enumerate((10, MIB + 3, 2 * MIB)):
        body = data_of(size, seed=i)
        resp = glacier.upload_archive(vaultName="vault", body=body,
                                      archiveDescription=f"pool/fs@snap{i}")
        uploaded[resp["archiveId"]] = (f"pool/fs@snap{i}", size, tree_hash(body).hex())
    job_id = glacier.initiate_job(vaultName="vault",
                                  jobParameters={"Type": "inventory-retrieval"})["jobId"]
    assert not glacier.describe_job(vaultName="vault", jobId=job_id)["Completed"]
    standin.clock.advance(4 * HOUR)
    job = glacier.describe_job(vaultName="vault", jobId=job_id)
    assert job["Action"] == "InventoryRetrieval" and job["Completed"]
    resp, body = output(glacier, job_id)
    assert job["InventorySizeInBytes"] == len(body)
    inventory = json.loads(body)
    assert inventory["VaultARN"].endswith(":vaults/vault")
    assert {a["ArchiveId"]: (a["ArchiveDescription"], a["Size"], a["SHA256TreeHash"])
            for a in inventory["ArchiveList"]} == uploaded
    assert all(a["CreationDate"].endswith("Z") for a in inventory["ArchiveList"])

    csv_job = glacier.initiate_job(vaultName="vault", jobParameters={
        "Type": "inventory-retrieval", "Format": "CSV"})["jobId"]
    standin.clock.advance(4 * HOUR)
    lines = output(glacier, csv_job)[1].decode().splitlines()
    assert lines[0] == "ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash"
    assert len(lines) == 4 and all(any(a in line for line in lines) for a in uploaded)


# --------------------------------------------------------------------------- as a program
@pytest.mark.parametrize("how", ["module", "script"])
def test_runs_as_a_program(how):
    cmd = ([sys.executable, "-m", "tests.servers.glacier_vault"] if how == "module"
           else [sys.executable, str(REPO / "tests" / "servers" / "glacier_vault.py")])
    proc = subprocess.Popen(cmd + ["--port", "0", "--delays", "Expedited=0.01"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = make_client(url)
        client.create_vault(vaultName="cli")
        assert client.describe_vault(vaultName="cli")["VaultName"] == "cli"
        with pytest.raises(urllib.error.HTTPError) as e:  # no Authorization header at all
            urllib.request.urlopen(url + "/-/vaults/cli", timeout=5)
        assert e.value.code == 403
        assert json.loads(e.value.read())["code"] == "MissingAuthenticationTokenException"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
