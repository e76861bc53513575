"""Issue 9: the catalog is robust (damage, foreign files, extra and dropped columns, read-only,
missing) and agrees with the store (missing archives seen by zg-verify, zg-catalog check, zg-ls,
zg-restore, zg-rm and zg-prune).  Real processes over a real file:// store and SQLite file."""

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path


from zfsglacier import errors
from zfsglacier.catalog.db import Catalog
from tests.helpers import assert_one_line_error, mounted, zg
from tests.test_prune_cli import site  # noqa: F401 (a fixture)

DAMAGED = errors.CatalogError.exit_code


def readers(site):  # noqa: F811
    """Commands that only read the catalog, with arguments that need nothing else."""
    return [("ls", site.dest), ("verify", site.dest), ("restore", site.dest, "tank/db@a2", "pool/x", "--dry-run"),
            ("prune", site.dest, "--keep-last", "1", "--dry-run"), ("catalog", "check", site.dest)]


def damage_the_middle(path):
    """Overwrite a page in the middle of the file (not the header): SQLite opens it, quick_check fails."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\xa5" * 4096)


def test_a_damaged_catalog_is_one_line_everywhere_and_rebuild_replaces_it(site):  # noqa: F811
    chain = site.chain("a", 10, 3)
    with Catalog(site.catalog) as cat:  # enough rows for a file of several pages
        for i in range(300):
            cat.upload_started(site.dest, f"t{i}", {"pad": "x" * 500})
        cat.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage_the_middle(site.catalog)
    for args in readers(site):
        assert_one_line_error(zg(*args, env=site.env), DAMAGED, "damaged", "zg-catalog rebuild")
    up = zg("upload", site.dest, "--raw", input=b"data", env=site.env)
    assert_one_line_error(up, DAMAGED, "damaged")
    assert len(site.files()) == 3  # nothing was uploaded
    p = zg("catalog", "rebuild", site.dest, env=site.env)
    assert p.returncode == 0, p.stderr.decode()
    assert "moved it to" in p.stderr.decode() and "3 archives recorded" in p.stdout.decode()
    kept = [f for f in os.listdir(os.path.dirname(site.catalog)) if ".damaged-" in f]
    assert kept, "the damaged catalog was not kept"
    assert sorted(r.id for r in site.rows()) == sorted(a.id for a in chain)


def test_foreign_files_and_changed_columns(site, tmp_path):  # noqa: F811
    site.chain("a", 10, 2)
    # a file that is not SQLite at all, and an SQLite database of something else
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE photos (name TEXT)")
        db.commit()
    for path, word in ((junk, "not a catalog"), (other, "not a zfsglacier catalog")):
        assert_one_line_error(zg("ls", site.dest, "--catalog", path, env=site.env), DAMAGED, word)
    with contextlib.closing(sqlite3.connect(other)) as db:  # and it was not turned into one
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["photos"]
    # a column a newer version added is ignored; a dropped nullable one is added back
    with contextlib.closing(sqlite3.connect(site.catalog)) as db:
        db.execute("ALTER TABLE archives ADD COLUMN future TEXT")
        db.execute("ALTER TABLE archives DROP COLUMN stream")
        db.commit()
    p = zg("ls", site.dest, env=site.env)
    assert p.returncode == 0 and "chain 1" in p.stdout.decode(), p.stderr.decode()
    p = zg("upload", site.dest, "--raw", input=b"more", env=site.env)
    assert p.returncode == 0, p.stderr.decode()
    with contextlib.closing(sqlite3.connect(site.catalog)) as db:
        assert "stream" in {r[1] for r in db.execute("PRAGMA table_info(archives)")}
    # a dropped core column, or a dropped table: damaged, not "0 archives"
    with contextlib.closing(sqlite3.connect(site.catalog)) as db:
        db.execute("ALTER TABLE archives DROP COLUMN size")
        db.commit()
    assert_one_line_error(zg("ls", site.dest, env=site.env), DAMAGED, "no size column")
    with contextlib.closing(sqlite3.connect(site.catalog)) as db:
        db.execute("DROP TABLE archives")
        db.commit()
    assert_one_line_error(zg("ls", site.dest, env=site.env), DAMAGED, "archives table is gone")


def test_a_missing_catalog_is_named(site, tmp_path):  # noqa: F811
    gone = tmp_path / "elsewhere" / "catalog.db"
    for args in readers(site):
        assert_one_line_error(zg(*args, "--catalog", gone, env=site.env), DAMAGED, f"no catalog at {gone}",
                              "zg-catalog rebuild")
    assert not gone.exists()


def read_only(directory):
    """``directory`` as a read-only mount (root ignores file modes): a catalog on a read-only disk."""
    mnt = directory.parent / (directory.name + "-ro")
    mnt.mkdir()
    return mounted(mnt, [["mount", "--bind", str(directory), str(mnt)], ["mount", "-o", "remount,ro,bind", str(mnt)]],
                   "the read-only catalog test needs a bind mount")


def test_a_read_only_catalog_serves_readers_and_stops_writers_first(site, tmp_path):  # noqa: F811
    site.format = None  # plain objects: zg-verify without a key checks their checksums only
    site.chain("a", 10, 3)
    with Catalog(site.catalog) as cat:
        cat.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with read_only(tmp_path) as ro:
        env = {**site.env, "ZG_CATALOG": str(ro / "catalog.db")}
        p = zg("ls", site.dest, env=env)
        assert p.returncode == 0 and p.stdout.decode().count("-> incr") == 2, p.stderr.decode()
        p = zg("restore", site.dest, "tank/db@a2", "pool/x", "--dry-run", env=env)
        assert p.returncode == 0 and "3 archives" in p.stdout.decode(), p.stderr.decode()
        p = zg("verify", site.dest, env=env)
        assert p.returncode == 0 and "3 ok" in p.stdout.decode(), p.stderr.decode()
        before = site.files()
        assert_one_line_error(zg("upload", site.dest, "--raw", input=b"x", env=env), DAMAGED, "cannot be written")
        assert site.files() == before


def test_missing_archives_are_reported_not_stopped_at(site):  # noqa: F811
    site.format = None
    a0, a1, a2 = site.chain("a", 10, 3)
    b0 = site.add("b0", 5)
    (Path(site.store.path) / f"{a1.id}.zg").unlink()  # deleted behind the tool's back
    side = Path(site.store.path) / f"{b0.id}.zg"
    side.write_bytes(side.read_bytes()[:-1] + b"!")  # and one damaged
    p = zg("verify", site.dest, env=site.env)
    out = p.stdout.decode()
    assert_one_line_error(p, errors.IntegrityError.exit_code, "2 ok, 1 failed, 1 missing, of 4 archives")
    assert f"MISSING {a1.id}" in out and f"FAIL    {b0.id}" in out
    assert f"ok      {a0.id}" in out and f"ok      {a2.id}" in out  # checked after the missing one
    listing = zg("ls", site.dest, env=site.env).stdout.decode()
    assert f"BROKEN at {a1.id}" in listing and "unrestorable" in listing and "MISSING from the store" in listing
    p = zg("restore", site.dest, "tank/db@a2", "pool/x", "--dry-run", env=site.env)
    assert_one_line_error(p, errors.NotFoundError.exit_code, "broken", a1.id, "missing from the store")
    # zg-rm: refused without --force (it is still the base of a2), then the row can be dropped
    assert_one_line_error(zg("rm", site.dest, a1.id, env=site.env), errors.UsageError.exit_code, "unrestorable")
    p = zg("rm", site.dest, a1.id, "--force", env=site.env)
    assert p.returncode == 0 and "removed from the catalog" in p.stderr.decode(), p.stderr.decode()
    assert a1.id not in {r.id for r in site.rows()}


def test_catalog_check_reconciles_without_reading_data(site):  # noqa: F811
    a0, a1 = site.chain("a", 10, 2)
    (Path(site.store.path) / f"{a0.id}.zg").rename(Path(site.store.path) / "aside")
    (Path(site.store.path) / f"{a0.id}.zg.json").rename(Path(site.store.path) / "aside.json")
    p = zg("catalog", "check", site.dest, env=site.env)
    assert_one_line_error(p, errors.NotFoundError.exit_code, "1 archives of the catalog are not in the store")
    assert f"MISSING {a0.id}" in p.stdout.decode()
    assert [r.id for r in site.rows() if r.missing] == [a0.id]
    # back again: check says so and the mark goes
    (Path(site.store.path) / "aside").rename(Path(site.store.path) / f"{a0.id}.zg")
    (Path(site.store.path) / "aside.json").rename(Path(site.store.path) / f"{a0.id}.zg.json")
    p = zg("catalog", "check", site.dest, env=site.env)
    assert p.returncode == 0 and f"back    {a0.id}" in p.stdout.decode(), p.stderr.decode()
    assert not [r for r in site.rows() if r.missing]


def test_prune_never_counts_a_missing_archive_as_keeping_a_snapshot(site):  # noqa: F811
    """b1 holds the newest snapshot through the chain b0 -> b1; a1 holds the same snapshot alone,
    a shorter way, but is missing from the store: the b chain is what keeps it restorable."""
    b0, b1 = site.chain("b", 10, 2)
    a1 = site.add("b1", 9, guid=b1.guid)  # a full of the same snapshot, uploaded later
    with Catalog(site.catalog) as cat:
        cat.mark_missing(site.dest, a1.id, 1)
    out = zg("prune", site.dest, "--keep-last", "1", "--dry-run", env=site.env).stdout.decode()
    plan, kept = out.split("keeping")
    assert b0.id in kept and b1.id in kept, out
    deleted = [line.split()[0] for line in plan.splitlines() if line.startswith("  ")]
    assert deleted == [a1.id], out  # the missing one goes, "restorable via" the chain that exists


def test_rebuild_marks_what_the_store_no_longer_has(site):  # noqa: F811
    a0, a1 = site.chain("a", 10, 2)
    (Path(site.store.path) / f"{a1.id}.zg").unlink()
    (Path(site.store.path) / f"{a1.id}.zg.json").unlink()
    p = zg("catalog", "rebuild", site.dest, env=site.env)
    assert_one_line_error(p, errors.IntegrityError.exit_code, "not in the store", a1.id)
    assert {r.id: bool(r.missing) for r in site.rows()} == {a0.id: False, a1.id: True}


def test_a_killed_upload_to_a_directory_is_collectable(site):  # noqa: F811
    """kill -9 of zg-upload part way (its input still coming): the .partial files stay, zg-ls shows
    the upload from the catalog, and zg-rm --incomplete removes both."""
    import signal
    import sys
    import time
    from tests.helpers import BIN
    proc = subprocess.Popen([sys.executable, str(BIN / "zg-upload"), site.dest, "--raw"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **site.env})
    proc.stdin.write(os.urandom(20 << 20))  # more than one 16 MiB part: the first one is written
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(f.endswith(".zg.partial") and
                                                  os.path.getsize(Path(site.store.path) / f) >= 16 << 20
                                                  for f in os.listdir(site.store.path)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [f for f in os.listdir(site.store.path) if ".partial" in f]
    listing = zg("ls", site.dest, env=site.env).stdout.decode()
    assert "incomplete upload" in listing and "zg-rm --incomplete" in listing and "zg-upload --resume" in listing
    p = zg("rm", "--incomplete", site.dest, env=site.env)
    assert p.returncode == 0 and "1 incomplete uploads aborted" in p.stdout.decode(), p.stderr.decode()
    assert not [f for f in os.listdir(site.store.path) if ".partial" in f]
    assert "incomplete" not in zg("ls", site.dest, env=site.env).stdout.decode()


def test_the_newest_catalog_copy_is_told_by_its_own_time_not_the_stores_second(tmp_path):
    """Two copies made within one second: a store's time (S3's LastModified, whole seconds) cannot
    order them, and the older one (without the newest archive) was taken about half the time, so a
    hidden archive went unnoticed (seen as a flaky hostile-store test on moto).  Either order of
    listing gives the copy written last."""
    import io
    from dataclasses import replace

    from zfsglacier.format import archive
    from zfsglacier.format.keys import SecretKey
    from zfsglacier.format.metadata import CatalogCopy
    from zfsglacier.services.rebuild import newest_catalog_copy
    from zfsglacier.stores import open_store
    from tests.helpers import file_destination

    key = SecretKey.generate()
    store = open_store(file_destination(tmp_path / "d"))
    infos = []
    for written, rows in ((1000.25, [{"id": "a"}]), (1000.75, [{"id": "a"}, {"id": "b"}])):
        out = io.BytesIO()
        archive.encrypt(io.BytesIO(CatalogCopy("d", rows, written=written).encode()), out, [key.recipient()])
        info = store.upload(io.BytesIO(out.getvalue()), {})
        infos.append(replace(info, created=1000.0))  # the same second, as the store dates them
    for listed in (infos, infos[::-1]):
        copy = newest_catalog_copy(store, listed, [key])
        assert copy.written == 1000.75
