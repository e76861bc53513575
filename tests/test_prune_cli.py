"""zg-prune as a real process over a real file:// store and catalog; archives are dated relative to
NOW, the test's start (ages in whole days, so the seconds a run takes change no decision)."""

import io
import os
import re
import time

import pytest
from helpers import REPO, assert_one_line_error, zg

from zfsglacier.catalog.db import Catalog
from zfsglacier.catalog.chains import chain_to
from zfsglacier.stores import open_store

DAY = 86400
NOW = int(time.time())


@pytest.fixture
def site(tmp_path):
    """A file:// destination and a catalog; ``add`` uploads an archive and records it."""
    class Site:
        dest = f"file://{tmp_path}/store"
        catalog = str(tmp_path / "catalog.db")
        store = open_store(dest)
        store.init()
        env = {"ZG_CATALOG": catalog, "ZG_CONFIG": str(tmp_path / "none.toml")}
        guids = iter(range(7001, 9000))

        format = "1"  # None: objects that do not claim to be archives (zg-verify then checks no footer)

        def add(self, name, days_ago, parent=None, dataset="tank/db", uploaded=None, guid=None):
            guid = guid or next(self.guids)
            meta = {"zg-toguid": str(guid), "zg-fromguid": str(parent.guid if parent else 0),
                    "zg-snap-created": str(NOW - days_ago * DAY), "zg-stream": "plain"}
            if self.format:
                meta["zg-format"] = self.format
            info = self.store.upload(io.BytesIO(name.encode() * 1000), meta)
            with Catalog(self.catalog) as cat:
                cat.record(self.store.url, info, dataset=dataset, snapshot=name,
                           uploaded=uploaded or NOW - days_ago * DAY + 3600)
            info.guid = guid
            return info

        def chain(self, prefix, first_days_ago, n, dataset="tank/db"):
            out, prev = [], None
            for i in range(n):
                prev = self.add(f"{prefix}{i}", first_days_ago - i, prev, dataset)
                out.append(prev)
            return out

        def files(self):
            return sorted(f for f in os.listdir(self.store.path) if f.endswith(".zg"))

        def rows(self, **kw):
            with Catalog(self.catalog) as cat:
                return cat.archives(self.store.url, **kw)

        def run(self, *args, env=None):
            return zg("prune", self.dest, *args, env={**self.env, **(env or {})})

    return Site()


def section(out, header):
    """The archive ids listed under the line starting with ``header``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    got = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        got.append(line.split()[0])
    return got


def test_dry_run_deletes_nothing_then_the_real_run_deletes_exactly_the_plan(site):
    old = site.chain("a", 40, 5)                  # an older chain, superseded
    new = site.chain("b", 9, 5)                   # days 9..5 ago
    other = site.chain("o", 300, 2, dataset="tank/other")
    files = site.files()

    dry = site.run("--keep-last", "2", "tank/db", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    out = dry.stdout.decode()
    assert site.files() == files
    assert all(r.deleted is None for r in site.rows(include_deleted=True))
    planned = section(out, "would delete")
    assert sorted(planned) == sorted(a.id for a in old)
    assert section(out, "keeping") == [b.id for b in new]
    assert re.search(rf"{new[0].id}  tank/db@b0  .*  9d  needed by {new[3].id} \(\+1 more\)\n", out)
    assert re.search(rf"{new[4].id}  tank/db@b4  .*  5d  last 1/2\n", out)
    assert "would save about $0/month" in out and dry.stderr == b""

    real = site.run("--keep-last", "2", "tank/db")
    assert real.returncode == 0, real.stderr
    assert section(real.stdout.decode(), "deleting") == planned      # the very lines of the dry run
    assert site.files() == sorted(f for f in files if f[:-3] not in planned)
    gone = {r.id for r in site.rows(include_deleted=True) if r.deleted is not None}
    assert gone == set(planned)
    assert all(NOW <= r.deleted <= time.time() for r in site.rows(include_deleted=True) if r.deleted is not None)
    live = site.rows()
    assert [a.id for a in chain_to(live, new[-1].guid).archives] == [b.id for b in new]
    assert {a.id for a in other} <= {r.id for r in live}              # other dataset untouched

    again = site.run("--keep-last", "2", "tank/db")
    assert again.returncode == 0 and "deleting 0 archives" in again.stdout.decode()


def test_failed_deletion_is_reported_and_the_rest_goes_on(site):
    old = site.chain("a", 40, 3)
    site.chain("b", 9, 2)
    os.unlink(os.path.join(site.store.path, old[1].id + ".zg.json"))   # the store cannot verify it
    proc = site.run("--keep-last", "1")
    err = proc.stderr.decode()
    assert proc.returncode == 10, err
    assert err.count("\n") == 2 and f"could not delete {old[1].id}" in err and "1 of 3 deletions failed" in err
    assert {r.id for r in site.rows()} >= {old[1].id}
    assert {r.id for r in site.rows(include_deleted=True) if r.deleted} == {old[0].id, old[2].id}
    assert not os.path.exists(os.path.join(site.store.path, old[0].id + ".zg"))


def test_minimum_duration_defers_unless_delete_early(site, tmp_path):
    """A price table that gives LOCAL a 90-day minimum stands in for GLACIER."""
    table = (REPO / "zfsglacier" / "data" / "prices.toml").read_text()
    table = table.replace("[classes.LOCAL]               # file://: your own disk, free as far as Amazon is "
                          "concerned\nstorage_per_gb_month = 0.0\nmin_days = 0",
                          "[classes.LOCAL]\nstorage_per_gb_month = 1000.0\nmin_days = 90")
    assert "min_days = 90" in table.split("[classes.LOCAL]")[1]
    prices = tmp_path / "prices.toml"
    prices.write_text(table)
    env = {"ZG_PRICES": str(prices)}
    young = site.add("young", 31, uploaded=NOW - 30 * DAY)
    aged = site.add("aged", 101, uploaded=NOW - 100 * DAY)
    site.add("newest", 1, uploaded=NOW - DAY)

    proc = site.run("--keep-last", "1", env=env)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert section(out, "deleting") == [aged.id]
    assert section(out, "deferred") == [young.id]
    until = time.strftime("%Y-%m-%d", time.gmtime(NOW - 30 * DAY + 90 * DAY))  # uploaded + min_days
    assert f"deferred until {until} (deleting now would still cost $" in out
    assert young.id + ".zg" in site.files() and aged.id + ".zg" not in site.files()

    proc = site.run("--keep-last", "1", "--delete-early", env=env)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert section(out, "deleting") == [young.id] and "deleting now still costs $" in out
    assert young.id + ".zg" not in site.files()


def test_refusals_are_one_line(site):
    site.chain("a", 3, 2)
    assert_one_line_error(site.run(), 2, "delete everything")
    assert_one_line_error(site.run("--keep-daily", "x"), 2)
    assert_one_line_error(site.run("--keep-last", "1", "tank/nope"), 11, "tank/nope")
    assert len(site.files()) == 2


def test_broken_chain_warns_on_stderr_and_keeps(site):
    a = site.chain("a", 5, 4)
    site.store.delete(a[1].id)
    with Catalog(site.catalog) as cat:
        cat.mark_deleted(site.store.url, a[1].id)
    proc = site.run("--keep-last", "1")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert err.count("\n") == 1 and err.startswith("zg-prune: warning:") and "broken" in err
    assert section(proc.stdout.decode(), "deleting") == [a[0].id]
    assert site.files() == sorted(x.id + ".zg" for x in a[2:])
