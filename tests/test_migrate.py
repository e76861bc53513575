"""zg-migrate, leaving the vault API: glacier://vault (the strict stand-in) -> S3 (moto), without
a key, each copy proven by the SHA-256 recorded at upload, the source deleted only after that,
an estimate first, and a second run that goes on where the first stopped."""

import json
import os
import time

import boto3
import jsonschema
import pytest

from tests.helpers import assert_one_line_error, mixed_data, zg
from zfsglacier.cli import schema


@pytest.fixture
def move(aws, tmp_path):
    n = os.getpid() + int(time.time() * 1000) % 100000
    vault, bucket = f"zg-migrate-{n}", f"zg-migrate-{n}"
    boto3.client("glacier", endpoint_url=aws.vault_url).create_vault(vaultName=vault)
    boto3.client("s3", endpoint_url=aws.s3_url).create_bucket(Bucket=bucket)
    env = dict(aws.env, ZG_CATALOG=str(tmp_path / "c.db"), ZG_CONFIG=str(tmp_path / "none.toml"))
    key = tmp_path / "k.key"
    zg("keygen", "-o", key, check=True)
    data = [mixed_data(300_000 + i * 1000, seed=30 + i) for i in range(3)]
    ids = [zg("upload", f"glacier://{vault}", "--name", f"tank/db@s{i}", input=zg("encrypt", key, input=d,
                                                                                 check=True).stdout,
              env=env, check=True).stdout.decode().strip() for i, d in enumerate(data)]
    return dict(src=f"glacier://{vault}", dst=f"s3://{bucket}/zfs", vault=vault, env=env, key=key, data=data,
                ids=ids, aws=aws)


def migrate(m, *args):
    return zg("migrate", m["src"], m["dst"], *args, env=m["env"])


def listed(m, dest):
    return json.loads(zg("ls", dest, "--json", env=m["env"], check=True).stdout)["archives"]


def test_the_estimate_comes_first_and_changes_nothing(move):
    p = migrate(move, "--dry-run")
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert text.count("would copy ") == 3 and "retrieval at Bulk about $" in text and "/month here" in text
    assert "prices as of " in text
    plan = json.loads(migrate(move, "-n", "--json").stdout)
    jsonschema.validate(plan, schema.SCHEMAS["migrate-plan"])
    assert len(plan["archives"]) == 3 and plan["hours"] == 12 and plan["monthly_source_dollars"] > 0
    assert listed(move, move["dst"]) == [] and len(move["aws"].vault.archive_ids(move["vault"])) == 3
    assert_one_line_error(migrate(move, "--max-cost", "0"), 2, "more than --max-cost")


def test_no_wait_then_copy_then_delete_the_source(move):
    p = migrate(move, "--no-wait")
    assert p.returncode == 75, p.stderr  # three retrieval jobs asked for
    time.sleep(1.2)  # the stand-in's Bulk jobs take a second
    p = migrate(move)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count(b"copied  ") == 3 and b"still holds them" in p.stdout
    copies = listed(move, move["dst"])
    originals = {a["sha256"]: a for a in listed(move, move["src"])}
    assert {c["sha256"] for c in copies} == set(originals)  # the very bytes, not re-encrypted
    assert {c["name"] for c in copies} == {f"tank/db@s{i}" for i in range(3)}
    assert all(c["storage_class"] == "DEEP_ARCHIVE" for c in copies)
    # a copy restores: fetched from S3 and decrypted, it is the data
    move["aws"].set_s3_restore_steps(0)
    by_name = {c["name"]: c["id"] for c in copies}
    got = zg("fetch", move["dst"], by_name["tank/db@s1"], env=move["env"], check=True).stdout
    assert zg("decrypt", move["key"], input=got, check=True).stdout == move["data"][1]
    assert len(move["aws"].vault.archive_ids(move["vault"])) == 3  # kept without --delete-source
    p = migrate(move, "--delete-source")
    assert p.returncode == 0 and p.stdout.count(b"deleted ") == 3 and b"nothing left to copy" in p.stdout
    assert move["aws"].vault.archive_ids(move["vault"]) == []
    assert listed(move, move["src"]) == [] and len(listed(move, move["dst"])) == 3


def test_a_damaged_vault_archive_is_not_copied_and_not_deleted(move):
    move["aws"].vault.corrupt(move["vault"], move["ids"][0], offset=5000)
    migrate(move, "--no-wait")
    time.sleep(1.2)
    p = migrate(move, "--delete-source")
    assert p.returncode == 16, p.stderr
    assert f"{move['ids'][0]}".encode() in p.stderr and b"1 of 3 archives could not be copied" in p.stderr
    assert p.stdout.count(b"deleted ") == 2
    assert move["aws"].vault.archive_ids(move["vault"]) == [move["ids"][0]]  # the only copy, kept
    assert len(listed(move, move["dst"])) == 2
