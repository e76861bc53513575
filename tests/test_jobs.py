"""Jobs and schedules: [jobs.NAME] run by zg-backup --job and zg-prune --job (taking snapshots by
a naming pattern, or using sanoid's by a pattern), zg-status reading their RPOs and expected
datasets, zg-units writing units that systemd-analyze accepts (or cron lines), and zg-drill."""

import json
import os
import shutil
import subprocess
import time

import jsonschema
import pytest

from tests.helpers import assert_one_line_error, mixed_data, zg
from zfsfuse import AdminZfs
from zfsglacier.cli import schema

pytestmark = pytest.mark.zfs


@pytest.fixture
def site(tmp_path, zfs_dataset):
    zfs = AdminZfs()
    other = f"{zfs_dataset.name}-b"
    zfs.create(other)
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    zg("keygen", "-o", key, "--public-file", pub, check=True)
    store = tmp_path / "store"
    zg("init", f"file://{store}", check=True)
    config = tmp_path / "config.toml"
    config.write_text(f'''
[destinations.usb]
url = "file://{store}"

[jobs.nightly]
datasets = ["{zfs_dataset.name}", "{other}"]
destination = "usb"
keys = ["{pub}"]
snapshot = "nightly-%Y%m%dT%H%M%S"
full_if_older_than = "30d"
keep_last = 2
rpo = "1d"
drill_key = "{key}"
''')
    env = {"ZG_CATALOG": str(tmp_path / "c.db"), "ZG_CONFIG": str(config)}
    for ds in (zfs_dataset.name, other):
        (zfs.mountpoint(ds) + "/f") and open(zfs.mountpoint(ds) + "/f", "wb").write(mixed_data(300_000, seed=len(ds)))
    yield dict(key=key, pub=pub, store=store, dest=f"file://{store}", env=env, ds=[zfs_dataset.name, other],
               config=config, tmp=tmp_path, zfs=zfs)
    if zfs.exists(other):
        for snap, refs in zfs.userrefs_all(other).items():
            for tag in ("zfsglacier",) if refs else ():
                zfs.release(tag, snap, missing_ok=True)
        from tests.conftest import _hold_tags
        for snap, refs in zfs.userrefs_all(other).items():
            for tag in _hold_tags(tmp_path) if refs else ():
                zfs.release(tag, snap, missing_ok=True)
        zfs.destroy(other, recursive=True)


def listed(site):
    return json.loads(zg("ls", "usb", "--json", env=site["env"], check=True).stdout)["archives"]


def test_backup_and_prune_by_job(site):
    plan = json.loads(zg("backup", "--job", "nightly", "--dry-run", "--json", env=site["env"], check=True).stdout)
    jsonschema.validate(plan, schema.SCHEMAS["backup-plan"])
    assert sorted(s["dataset"] for s in plan["steps"]) == sorted(site["ds"])  # one plan for the whole job
    for _ in range(3):
        p = zg("backup", "--job", "nightly", env=site["env"])
        assert p.returncode == 0, p.stderr
        time.sleep(1.1)  # the pattern has seconds: one name per run
    rows = listed(site)
    assert len(rows) == 6 and all(r["name"].split("@")[1].startswith("nightly-") for r in rows)
    assert {r["dataset"] for r in rows} == set(site["ds"])
    assert_one_line_error(zg("backup", "--job", "nightly", site["ds"][0], env=site["env"]), 2, "give no DATASET")
    assert_one_line_error(zg("backup", "--job", "weekly", env=site["env"]), 2, "no job 'weekly'", "nightly")
    p = zg("prune", "--job", "nightly", "--dry-run", env=site["env"])
    assert p.returncode == 0 and p.stdout.count(b"would delete") == 2, p.stdout  # per dataset: its plan
    # keep_last 2, but a chain of incrementals keeps its full: nothing can go yet
    zg("prune", "--job", "nightly", env=site["env"], check=True)
    assert len(listed(site)) == 6


def test_a_job_can_use_the_snapshots_sanoid_takes(site):
    text = site["config"].read_text().replace('snapshot = "nightly-%Y%m%dT%H%M%S"', 'existing = "autosnap_*_daily"')
    site["config"].write_text(text)
    ds = site["ds"][0]
    for name in ("autosnap_2026-12-01_00:00:01_daily", "autosnap_2026-12-02_00:00:01_daily",
                 "autosnap_2026-12-02_13:00:01_hourly"):
        site["zfs"]._run("snapshot", f"{ds}@{name}")
    before = {s.short for s in site["zfs"].snapshots(ds)}
    p = zg("backup", "--job", "nightly", env=site["env"])
    assert p.returncode == 16 and b"has no snapshot matching 'autosnap_*_daily'" in p.stderr  # the other dataset
    assert {s.short for s in site["zfs"].snapshots(ds)} == before  # it took none
    (row,) = listed(site)
    assert row["name"] == f"{ds}@autosnap_2026-12-02_00:00:01_daily"


def test_status_knows_the_jobs_datasets_and_rpo(site):
    zg("backup", site["ds"][0], "usb", "--key", site["pub"], "--snapshot", "s1", env=site["env"], check=True)
    p = zg("status", "--json", env=site["env"])
    assert p.returncode == 21  # the job's second dataset was never backed up
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema.SCHEMAS["status"])
    by = {d["dataset"]: d for d in doc["destinations"][0]["datasets"]}
    assert by[site["ds"][0]]["rpo"] == 86400 and not by[site["ds"][0]]["breached"]
    assert by[site["ds"][0]]["next_full"] > time.time() + 29 * 86400  # full_if_older_than 30d
    assert by[site["ds"][1]]["breached"] and by[site["ds"][1]]["broken"] == "never backed up here"
    assert b"never backed up here" in p.stderr
    zg("backup", "--job", "nightly", env=site["env"], check=True)
    assert zg("status", env=site["env"]).returncode == 0


def test_units_are_what_systemd_accepts(site):
    out = site["tmp"] / "units"
    out.mkdir()
    p = zg("units", "-o", out, "--prometheus", site["tmp"] / "zg.prom", env=site["env"])
    assert p.returncode == 0, p.stderr
    names = sorted(os.listdir(out))
    assert names == sorted([f"zfsglacier-{k}-nightly.{u}" for k in ("backup", "prune", "drill")
                            for u in ("service", "timer")] + ["zfsglacier-status.service", "zfsglacier-status.timer"])
    status_unit = (out / "zfsglacier-status.service").read_text()
    assert f"--prometheus {site['tmp'] / 'zg.prom'}" in status_unit and "SuccessExitStatus=21" in status_unit
    service = (out / "zfsglacier-backup-nightly.service").read_text()
    assert "ExecStart=" in service and service.split("ExecStart=")[1].splitlines()[0].split()[1:] == ["--job", "nightly"]
    assert f"Environment=ZG_CONFIG={site['config']}" in service
    assert "OnCalendar=daily" in (out / "zfsglacier-backup-nightly.timer").read_text()
    analyze = shutil.which("systemd-analyze")
    if analyze:  # Debian has it (systemd); it checks the units as systemd would load them
        done = subprocess.run([analyze, "verify", *sorted(str(out / n) for n in names)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
    cron = zg("units", "--cron", env=site["env"], check=True).stdout.decode()
    assert "@daily root " in cron and "--job nightly" in cron and "@weekly root " in cron
    site["config"].write_text(site["config"].read_text() + 'schedule = "dayly"\n')
    p = zg("units", env=site["env"])
    if analyze:
        assert_one_line_error(p, 2, "schedule = 'dayly' is not a systemd calendar expression")


def test_drill_checks_a_chain_and_zg_status_shows_it(site):
    for snap in ("s1", "s2"):
        zg("backup", site["ds"][0], "usb", "--key", site["pub"], "--snapshot", snap, env=site["env"], check=True)
    p = zg("drill", "usb", "--key", site["key"], "--json", env=site["env"])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema.SCHEMAS["drill"])
    assert doc["checked"] == "every chunk authenticated" and doc["snapshot"].startswith(site["ds"][0] + "@")
    state = json.loads(zg("status", "usb", "--json", env=site["env"]).stdout)
    assert state["destinations"][0]["last_drill"]["ok"] == len(doc["archives"])
    # received into a scratch dataset, compared with the source (unchanged since @s2), destroyed
    scratch = f"{site['ds'][0].split('/')[0]}/scratch-{os.getpid()}"
    site["zfs"].create(scratch)
    try:
        for _ in range(4):  # random picks: until it drills @s2, the chain of two
            p = zg("drill", "usb", "--key", site["key"], "--receive", scratch, "--json", env=site["env"])
            assert p.returncode == 0, p.stderr
            doc = json.loads(p.stdout)
            if doc["snapshot"].endswith("@s2"):
                break
        assert doc["compared"] == f"1 files identical to {site['ds'][0]}@s2" or not doc["snapshot"].endswith("@s2")
        assert site["zfs"].list_datasets(scratch) == [scratch]  # nothing left under it
    finally:
        site["zfs"].destroy(scratch, recursive=True)


def test_a_drill_of_a_damaged_archive_fails_and_is_noted(site):
    zg("backup", "--job", "nightly", env=site["env"], check=True)
    for row in listed(site):  # both datasets' archives damaged: whichever the drill picks
        path = site["store"] / f"{row['id']}.zg"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    p = zg("drill", "usb", "--key", site["key"], env=site["env"])
    assert_one_line_error(p, 12, "drill of", "failed")
    p = zg("status", "--nagios", env=site["env"])
    assert p.returncode == 1 and b"the last zg-drill found 1 failed" in p.stdout, p.stdout


def test_a_drill_by_job_uses_its_key_and_budget(site):
    zg("backup", "--job", "nightly", env=site["env"], check=True)
    p = zg("drill", "--job", "nightly", env=site["env"])
    assert p.returncode == 0 and b"every chunk authenticated" in p.stdout, p.stderr
    site["config"].write_text(site["config"].read_text().replace('drill_key = ', '# drill_key = '))
    p = zg("drill", "--job", "nightly", env=site["env"])
    assert p.returncode == 0 and b"checksums only" in p.stdout, p.stderr


@pytest.mark.parametrize("destination", ["s3"], indirect=True)
def test_a_cold_drill_keeps_to_its_budget_and_finishes_what_it_started(destination, aws, tmp_path, zfs_dataset):
    dest, env = destination
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    zg("keygen", "-o", key, "--public-file", pub, check=True)
    (zfs_dataset.path / "f").write_bytes(mixed_data(200_000, seed=3))
    for snap in ("s1", "s2"):
        zg("backup", zfs_dataset.name, dest, "--key", pub, "--snapshot", snap, env=env, check=True)
    assert_one_line_error(zg("drill", dest, "--key", key, "--max-cost", "0", env=env), 2, "the cheapest drill costs")
    aws.set_s3_restore_steps(3)
    try:
        p = zg("drill", dest, "--key", key, "--no-wait", env=env)
        assert p.returncode == 75, p.stderr
        first = p.stdout.decode().split("drilling ")[1].split(" (")[0]
        for _ in range(5):  # later runs finish that drill, and pick nothing new
            p = zg("drill", dest, "--key", key, "--no-wait", env=env)
            assert f"finishing the drill of {first}".encode() in p.stdout, p.stderr
            if p.returncode == 0:
                break
        assert p.returncode == 0, p.stderr
    finally:
        aws.set_s3_restore_steps(0)
    p = zg("drill", dest, "--key", key, "--no-wait", env=env)
    assert p.stdout.startswith(b"drilling ")  # a new pick: the last one is done
