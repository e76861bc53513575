"""Honest plans: every --dry-run says how big, how sure, what it costs and from which price table,
as text and as JSON that matches its schema (zfsglacier/cli/schema.py)."""

import json
import os
import pty
import subprocess
import sys

import jsonschema
import pytest

from tests.helpers import BIN, mixed_data, zg
from zfsglacier.cli import schema



def settle(dataset):
    """zfs-fuse counts new data in `referenced` once its txg is synced, every 30 s (it has no
    `zpool sync`): a snapshot syncs one at once, and is destroyed again."""
    from zfsfuse import AdminZfs
    zfs = AdminZfs()
    zfs._run("snapshot", f"{dataset}@settle")
    zfs._run("destroy", f"{dataset}@settle")


def valid(doc, kind):
    jsonschema.validate(doc, schema.SCHEMAS[kind])
    assert doc["schema"] == f"zfsglacier.{kind}/{schema.VERSION}"
    return doc


@pytest.fixture
def world(tmp_path, zfs_dataset):
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    zg("keygen", "-o", key, "--public-file", pub, check=True)
    dest = f"file://{tmp_path}/store"
    zg("init", dest, check=True)
    env = {"ZG_CATALOG": str(tmp_path / "c.db"), "ZG_CONFIG": str(tmp_path / "none.toml")}
    (zfs_dataset.path / "text.sql").write_bytes(mixed_data(8 << 20, seed=11))
    settle(zfs_dataset.name)
    return dict(key=key, pub=pub, dest=dest, env=env, ds=zfs_dataset)


@pytest.mark.zfs
def test_a_full_plan_is_compressed_like_a_sample_and_dated(world):
    ds, dest = world["ds"].name, world["dest"]
    p = zg("backup", ds, dest, "--key", world["pub"], "--snapshot", "auto", "-n", env=world["env"])
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert "to send (referenced)" in text and f"archived (all of the files of {ds} compressed to" in text, text
    assert "prices as of " in text and "unknown" not in text and "?" not in text
    doc = valid(json.loads(zg("backup", ds, dest, "--key", world["pub"], "--snapshot", "auto", "--dry-run",
                              "--json", env=world["env"], check=True).stdout), "backup-plan")
    (step,) = doc["steps"]
    assert step["kind"] == "full" and step["upper_bound"] is False
    # mixed data compresses well: the archive is estimated well under the size sent, and the
    # monthly cost is the archive's, not the stream's
    assert step["archive_bytes"] < step["send_bytes"] * 0.7, step
    assert step["sample"]["whole"] and step["sample"]["read"] >= 8 << 20
    # and the estimate is honest: the real archive is within 15% of it
    zg("backup", ds, dest, "--key", world["pub"], "--snapshot", "s1", env=world["env"], check=True)
    made = json.loads(zg("ls", dest, "--json", env=world["env"], check=True).stdout)["archives"][0]["size"]
    assert abs(made - step["archive_bytes"]) < 0.15 * made, (made, step["archive_bytes"])


@pytest.mark.zfs
def test_an_incremental_plan_on_zfs_fuse_is_an_upper_bound_not_unknown(world):
    ds, dest = world["ds"].name, world["dest"]
    zg("backup", ds, dest, "--key", world["pub"], "--snapshot", "s1", env=world["env"], check=True)
    (world["ds"].path / "more.bin").write_bytes(mixed_data(1 << 20, seed=12))
    p = zg("backup", ds, dest, "--key", world["pub"], "--snapshot", "auto", "--dry-run", env=world["env"])
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert "incremental (from s1)" in text and "at most" in text and "unknown" not in text, text
    doc = valid(json.loads(zg("backup", ds, dest, "--key", world["pub"], "--snapshot", "auto", "-n", "--json",
                              env=world["env"], check=True).stdout), "backup-plan")
    (step,) = doc["steps"]
    assert step["base"] == "s1" and step["upper_bound"] is True and step["send_bytes"] > 0
    assert "ZFS gives no incremental size here" in step["estimated_by"]
    up = valid(json.loads(zg("backup", ds, dest, "--key", world["pub"], "-n", "--json", env=world["env"],
                             check=True).stdout), "backup-plan")
    assert up["steps"] == [] and up["up_to_date"] == [ds]  # s1 is the newest snapshot, and archived


@pytest.mark.zfs
def test_json_needs_dry_run(world):
    p = zg("backup", world["ds"].name, world["dest"], "--key", world["pub"], "--json", env=world["env"])
    assert p.returncode == 2 and b"--json goes with --dry-run" in p.stderr


@pytest.mark.zfs
def test_restore_and_prune_plans_as_json(world):
    ds, dest = world["ds"].name, world["dest"]
    for snap in ("s1", "s2"):
        zg("backup", ds, dest, "--key", world["pub"], "--snapshot", snap, env=world["env"], check=True)
    doc = valid(json.loads(zg("restore", dest, f"{ds}@s2", f"{ds}-r", "-n", "--json", env=world["env"],
                              check=True).stdout), "restore-plan")
    assert [a["kind"] for a in doc["archives"]] == ["full", "incremental"]
    assert doc["bytes"] == sum(a["size"] for a in doc["archives"]) and doc["retrieval"]
    assert doc["prices_as_of"].startswith("prices as of ")
    doc = valid(json.loads(zg("prune", dest, "--keep-last", "1", "--dry-run", "--json", env=world["env"],
                              check=True).stdout), "prune-plan")
    assert doc["delete"] == [] and len(doc["keep"]) == 2  # s2's chain needs s1's full
    listed = valid(json.loads(zg("ls", dest, "--json", "--holds", env=world["env"], check=True).stdout), "ls")
    assert len(listed["archives"]) == 2 and listed["holds"]  # nothing went


# --- zg-rm: the cost first, a question on a terminal ---------------------------------------------

def _cold_world(destination, tmp_path, n=3):
    dest, env = destination
    key = tmp_path / "k.key"
    zg("keygen", "-o", key, check=True)
    ids = [zg("upload", dest, "--name", f"pool/ds@s{i}", input=zg("encrypt", key, input=os.urandom(50_000),
                                                                    check=True).stdout, env=env,
              check=True).stdout.decode().strip() for i in range(n)]
    return dest, env, key, ids


def _listed(dest, env):
    valid(json.loads(zg("ls", dest, "--remote", "--json", env=env, check=True).stdout), "ls-remote")
    return [a["id"] for a in valid(json.loads(zg("ls", dest, "--json", env=env, check=True).stdout), "ls")["archives"]]


def on_terminal(cmd, *args, answer, env):
    """bin/zg-CMD with stdin and stderr on a pseudo-terminal, answering ``answer`` to a question."""
    master, slave = pty.openpty()
    e = dict(os.environ, **env)
    e.pop("ZG_DEBUG", None)
    proc = subprocess.Popen([sys.executable, str(BIN / f"zg-{cmd}"), *map(str, args)], stdin=slave,
                            stdout=subprocess.PIPE, stderr=slave, env=e)
    os.close(slave)
    shown = b""
    while b"[y/N]" not in shown:
        try:
            piece = os.read(master, 4096)
        except OSError:
            break
        if not piece:
            break
        shown += piece
    os.write(master, answer.encode() + b"\n")
    out, _ = proc.communicate(timeout=60)
    try:
        while piece := os.read(master, 4096):
            shown += piece
    except OSError:
        pass
    os.close(master)
    return proc.returncode, out, shown.decode(errors="replace")


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_rm_says_what_it_costs_first_and_asks_on_a_terminal(destination, aws, tmp_path):
    dest, env, _, ids = _cold_world(destination, tmp_path)
    p = zg("rm", dest, ids[0], "--dry-run", env=env)
    assert p.returncode == 0 and ids[0] in _listed(dest, env)
    text = p.stdout.decode()
    assert text.startswith(f"would delete {ids[0]} (pool/ds@s0, ") and "DEEP_ARCHIVE bills at least 180 days" in text
    assert "prices as of " in text
    doc = valid(json.loads(zg("rm", dest, ids[0], "-n", "--json", env=env, check=True).stdout), "rm-plan")
    assert doc["min_days"] == 180 and doc["early_deletion_dollars"] > 0 and doc["age_days"] < 1
    code, _, shown = on_terminal("rm", dest, ids[0], answer="n", env=env)
    assert code == 2 and "DEEP_ARCHIVE bills at least 180 days" in shown and "not confirmed" in shown, shown
    assert ids[0] in _listed(dest, env)
    code, _, shown = on_terminal("rm", dest, ids[0], answer="y", env=env)
    assert code == 0, shown
    assert ids[0] not in _listed(dest, env)
    p = zg("rm", dest, ids[1], env=env)  # off a terminal (cron): the command line decides, nothing asked
    assert p.returncode == 0 and ids[1] not in _listed(dest, env)
    assert b"[y/N]" not in p.stderr and b"still costs" in p.stderr


@pytest.mark.parametrize("destination", ["file"], indirect=True)
def test_rm_incomplete_dry_run_aborts_nothing(destination, tmp_path):
    dest, env = destination  # a killed run's leftover, as the file store names it
    partial = tmp_path / "store" / "20261203T000000Z-deadbeef.zg.partial"
    partial.write_bytes(b"x" * 1000)
    p = zg("rm", "--incomplete", dest, "--dry-run", env=env)
    assert p.returncode == 0, p.stderr
    assert b"would abort" in p.stdout and b"1 incomplete uploads would be aborted" in p.stdout
    assert partial.exists()
    p = zg("rm", "--incomplete", dest, env=env)
    assert p.returncode == 0 and b"1 incomplete uploads aborted" in p.stdout and not partial.exists()


# --- zg-verify on a cold destination: priced first, sampled, bounded ------------------------------

@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_verify_prices_its_thaws_and_keeps_to_a_budget(destination, aws, tmp_path):
    dest, env, key, ids = _cold_world(destination, tmp_path)
    p = zg("verify", dest, "--dry-run", env=env)
    assert p.returncode == 0, p.stderr
    assert "thawing 3 archive(s)" in p.stdout.decode() and "at the Standard tier costs about $" in p.stdout.decode()
    plan = valid(json.loads(zg("verify", dest, "-n", "--json", "--tier", "Bulk", env=env, check=True).stdout),
                 "verify-plan")
    assert plan["cold_archives"] == 3 and plan["thaw_dollars"] > 0 and plan["thaw_hours"] == 48
    one = plan["thaw_dollars"] / 3
    p = zg("verify", dest, "--max-cost", "0", env=env)  # nothing is thawed: refused first
    assert p.returncode == 2 and b"more than --max-cost $0" in p.stderr and b"--sample" in p.stderr
    assert json.loads(zg("ls", dest, "--json", env=env, check=True).stdout)["thaws"] == []
    doc = valid(json.loads(zg("verify", dest, "--sample", "1", "--key", key, "--json", env=env,
                              check=True).stdout), "verify")
    assert len(doc["archives"]) == 1 and doc["archives"][0]["result"] == "ok" and doc["with_key"]
    assert doc["archives"][0]["id"] in ids and doc["thaw"]["archives"] == 1
    p = zg("verify", dest, "--sample", "3", "--max-cost", f"{one * 2.5:.6f}", "--tier", "Bulk", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert len(valid(json.loads(p.stdout), "verify")["archives"]) == 2
    assert b"affords 2 of the 3 archives" in p.stderr


def test_every_json_document_names_and_matches_its_schema(tmp_path):
    """zg-inspect's and zg-doctor's JSON too; and every schema checks a document of its kind."""
    key = tmp_path / "k.key"
    zg("keygen", "-o", key, check=True)
    blob = zg("encrypt", key, input=b"data" * 1000, check=True).stdout
    valid(json.loads(zg("inspect", "--json", input=blob, check=True).stdout), "inspect")
    doc = valid(json.loads(zg("inspect", "--json", "--key", key, "--verify", input=blob, check=True).stdout),
                "inspect")
    assert doc["verified"]["plaintext_length"] == 4000
    dest = f"file://{tmp_path}/store"
    zg("init", dest, check=True)
    env = {"ZG_CATALOG": str(tmp_path / "c.db"), "ZG_CONFIG": str(tmp_path / "none.toml")}
    valid(json.loads(zg("doctor", dest, "--json", env=env).stdout), "doctor")
    with pytest.raises(jsonschema.ValidationError):  # a schema that can fail
        valid(dict(doc, chunk_size="big"), "inspect")
