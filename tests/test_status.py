"""zg-status, what a monitoring system asks: per dataset the last good backup and its age against
the RPO (exit 21 when breached), as text, JSON (its schema), a Nagios line (0/1/2/3) and a
Prometheus textfile that Prometheus's own parser reads; zg-verify's results recorded and shown;
and the [hooks] that cron runs want."""

import json
import os
import time

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import assert_one_line_error, mixed_data, zg
from zfsglacier.cli import schema

pytestmark = pytest.mark.zfs


@pytest.fixture
def site(tmp_path, zfs_dataset):
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    zg("keygen", "-o", key, "--public-file", pub, check=True)
    store = tmp_path / "store"
    dest = f"file://{store}"
    zg("init", dest, check=True)
    config = tmp_path / "config.toml"
    config.write_text(f'[destinations.usb]\nurl = "{dest}"\nrpo = "1d"\n')
    env = {"ZG_CATALOG": str(tmp_path / "c.db"), "ZG_CONFIG": str(config)}
    (zfs_dataset.path / "f").write_bytes(mixed_data(1 << 20, seed=21))
    for snap in ("s1", "s2"):
        zg("backup", zfs_dataset.name, "usb", "--key", pub, "--snapshot", snap, env=env, check=True)
    return dict(key=key, pub=pub, dest=dest, store=store, env=env, ds=zfs_dataset.name, config=config,
                tmp=tmp_path)


def status(site, *args):
    return zg("status", *args, env=site["env"])


def test_within_the_rpo_is_exit_0_with_the_chain_and_what_was_checked(site):
    p = status(site)
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert f"{site['ds']}  @s2 " in text and "RPO 24.0h ok" in text and "chain of 2" in text, text
    assert "verified never" in text and "last verify: never" in text
    zg("verify", "usb", "--key", site["key"], env=site["env"], check=True)
    doc = json.loads(status(site, "--json").stdout)
    jsonschema.validate(doc, schema.SCHEMAS["status"])
    (dest,) = doc["destinations"]
    (ds,) = dest["datasets"]
    assert ds["snapshot"] == "s2" and ds["chain_length"] == 2 and not ds["breached"] and ds["rpo"] == 86400
    assert ds["last_verified"] and time.time() - ds["last_verified"] < 120
    assert ds["held"] == [f"{site['ds']}@s2"]  # zfs-fuse has no bookmarks: the next base is held
    assert dest["last_verify"]["ok"] == 2 and dest["last_verify"]["failed"] == 0


def test_a_breached_rpo_is_exit_21_a_nagios_critical_and_a_metric(site):
    time.sleep(2)
    p = status(site, "--rpo", "1s")
    assert_one_line_error(p, 21, "RPO breached", site["ds"], "@s2")
    assert b"BREACH" in p.stdout  # the report is still there
    p = status(site, "--rpo", "1s", "--nagios")
    assert p.returncode == 2 and p.stdout.startswith(b"ZFSGLACIER CRITICAL - "), p.stdout
    assert status(site, "--nagios").stdout.startswith(b"ZFSGLACIER OK - 1 dataset(s)")
    prom = site["tmp"] / "zfsglacier.prom"
    assert status(site, "--rpo", "1s", "--prometheus", prom).returncode == 21
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    breached = {s.labels["dataset"]: s.value for s in families["zfsglacier_rpo_breached"].samples}
    assert breached == {site["ds"]: 1.0}
    (age,) = families["zfsglacier_last_backup_age_seconds"].samples
    assert age.labels == {"destination": site["dest"], "dataset": site["ds"]} and age.value >= 2
    (when,) = families["zfsglacier_last_backup_timestamp_seconds"].samples
    assert abs(when.value - (time.time() - age.value)) < 60  # the full timestamp, not 1.7e+09
    assert not (site["tmp"] / "zfsglacier.prom.tmp").exists()
    status(site, "--prometheus", prom)
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert [s.value for s in families["zfsglacier_rpo_breached"].samples] == [0.0]


def test_an_archive_gone_from_the_store_is_no_backup(site):
    """The newest archive deleted behind the tool's back: zg-verify marks it missing, and the last
    good backup falls back to the snapshot before it, with a warning; both gone: a breach."""
    listed = json.loads(zg("ls", "usb", "--json", env=site["env"], check=True).stdout)["archives"]
    newest = max(listed, key=lambda a: a["created"])
    os.unlink(site["store"] / f"{newest['id']}.zg")
    assert zg("verify", "usb", env=site["env"]).returncode == 11
    p = status(site, "--nagios")
    assert p.returncode == 1 and b"WARNING" in p.stdout and b"cannot be restored" in p.stdout, p.stdout
    doc = json.loads(status(site, "--json").stdout)
    (ds,) = doc["destinations"][0]["datasets"]
    assert ds["snapshot"] == "s1" and ds["broken"]
    for a in listed:
        if a["id"] != newest["id"]:
            os.unlink(site["store"] / f"{a['id']}.zg")
    zg("verify", "usb", env=site["env"])
    p = status(site)
    assert_one_line_error(p, 21, "no restorable backup")


def test_hooks_run_after_cron_commands_and_never_change_their_exit_code(site):
    log = site["tmp"] / "hook.log"
    site["config"].write_text(site["config"].read_text() + (
        f'[hooks]\non_success = "echo ok $ZG_COMMAND $ZG_EXIT >> {log}; echo to-stdout"\n'
        f'on_failure = "echo fail $ZG_COMMAND $ZG_EXIT $ZG_ERROR >> {log}; exit 3"\n'))
    p = zg("verify", "usb", "--key", site["key"], env=site["env"])
    assert p.returncode == 0 and b"to-stdout" not in p.stdout and b"to-stdout" in p.stderr
    assert log.read_text() == "ok zg-verify 0\n"
    p = zg("verify", "usb", "no-such-id", env=site["env"])
    assert p.returncode == 11  # the hook's own exit 3 is a warning, not the command's code
    assert b"warning: the on_failure hook exited 3" in p.stderr
    assert log.read_text().splitlines()[1].startswith("fail zg-verify 11 not in the catalog")
    assert zg("ls", "usb", env=site["env"]).returncode == 0 and len(log.read_text().splitlines()) == 2  # not a cron command


def test_no_catalog_is_unknown_to_nagios(tmp_path):
    env = {"ZG_CATALOG": str(tmp_path / "none.db"), "ZG_CONFIG": str(tmp_path / "none.toml")}
    p = zg("status", "--nagios", env=env)
    assert p.returncode == 3 and p.stdout.startswith(b"ZFSGLACIER UNKNOWN - no catalog")
    assert_one_line_error(zg("status", env=env), 18, "no catalog")
