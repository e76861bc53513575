"""The local catalog: every archive uploaded from this host, where it went, and what it holds.

SQLite (one file, WAL, safe for a cron job and an interactive command at once).  Snapshot
identity is kept by guid, as text (guids are unsigned 64-bit; SQLite integers are signed).  The
catalog can always be rebuilt from a destination (``zg-catalog rebuild``): object metadata and
vault descriptions carry the archives' public header fields, and a copy of the header.
"""

import json
import os
import sqlite3
import time
from dataclasses import dataclass

from ..errors import CatalogError, DamagedCatalogError
from ..format.metadata import PublicMetadata

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS archives (
    dest TEXT NOT NULL,             -- destination URL
    id TEXT NOT NULL,               -- the store's archive id
    size INTEGER NOT NULL,          -- bytes stored
    sha256 TEXT,                    -- hex SHA-256 of the bytes stored
    checksum TEXT,                  -- the store's own checksum notation
    uploaded REAL NOT NULL,         -- when the upload completed (epoch seconds)
    storage_class TEXT,
    toguid TEXT, fromguid TEXT,     -- ZFS stream identity (decimal text), NULL for non-ZFS input
    snap_created INTEGER,           -- the snapshot's creation time
    stream TEXT,                    -- plain | compound
    dataset TEXT, snapshot TEXT,    -- names when known (the backup host knows them; a rebuild may not)
    public TEXT NOT NULL,           -- all public metadata, JSON
    deleted REAL,                   -- when zg-rm / zg-prune deleted it
    identity TEXT,                  -- where names and guids came from: upload | header | copy | metadata
    missing REAL,                   -- when a rebuild found it listed by a catalog copy but not in the store
    locked_until REAL,              -- S3 Object Lock: the server keeps it until then (as it last said)
    lock_mode TEXT,                 -- governance | compliance
    version TEXT,                   -- the store's id of the bytes uploaded (S3 VersionId): what reads name
    PRIMARY KEY (dest, id)
);
CREATE INDEX IF NOT EXISTS archives_toguid ON archives (dest, toguid);
CREATE TABLE IF NOT EXISTS uploads (  -- started and not (yet) completed: what zg-ls calls incomplete
    dest TEXT NOT NULL, token TEXT NOT NULL, started REAL NOT NULL, public TEXT NOT NULL,
    command TEXT,                     -- zg-upload | zg-backup: what can finish it (resume needs the same bytes)
    PRIMARY KEY (dest, token)
);
CREATE TABLE IF NOT EXISTS thaws (    -- restores asked of a cold class, until read
    dest TEXT NOT NULL, id TEXT NOT NULL, tier TEXT NOT NULL, days INTEGER NOT NULL,
    requested REAL NOT NULL, state TEXT NOT NULL, detail TEXT,
    PRIMARY KEY (dest, id)
);
CREATE TABLE IF NOT EXISTS catalog_copies (  -- encrypted copies of this catalog at a destination
    dest TEXT NOT NULL, id TEXT NOT NULL, uploaded REAL NOT NULL, PRIMARY KEY (dest, id)
);
CREATE TABLE IF NOT EXISTS checks (  -- each archive zg-verify or zg-drill read back, and how it went
    dest TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL,  -- verify | drill
    finished REAL NOT NULL, result TEXT NOT NULL,           -- ok | FAIL | MISSING
    detail TEXT
);
CREATE INDEX IF NOT EXISTS checks_by_dest ON checks (dest, kind, finished);
CREATE TABLE IF NOT EXISTS capabilities (    -- what zg-doctor found a destination's server can do
    dest TEXT PRIMARY KEY, probed REAL NOT NULL, found TEXT NOT NULL  -- JSON: Store.capabilities()
);
"""


@dataclass
class ArchiveRow:
    dest: str
    id: str
    size: int
    sha256: str | None
    checksum: str | None
    uploaded: float
    storage_class: str | None
    toguid: int | None
    fromguid: int | None
    snap_created: int | None
    stream: str | None
    dataset: str | None
    snapshot: str | None
    public: dict
    deleted: float | None
    identity: str | None = None
    missing: float | None = None
    locked_until: float | None = None
    lock_mode: str | None = None
    version: str | None = None

    @property
    def incremental(self):
        return bool(self.fromguid)

    @property
    def meta(self):
        """The public metadata recorded for it, typed (metadata.PublicMetadata)."""
        return PublicMetadata.parse(self.public)

    @property
    def name(self):
        """dataset@snapshot when known, else the guid."""
        if self.dataset and self.snapshot:
            return f"{self.dataset}@{self.snapshot}"
        return f"guid:{self.toguid}" if self.toguid is not None else self.id


def _text(n):
    return None if n is None else str(n)


_FIELDS = set(ArchiveRow.__dataclass_fields__)


def _row(r):
    d = {k: r[k] for k in r.keys() if k in _FIELDS}  # columns a newer version added are ignored
    d["public"] = json.loads(d["public"])
    for k in ("toguid", "fromguid"):
        d[k] = int(d[k]) if d[k] is not None else None
    return ArchiveRow(**d)


# Columns of `archives` a catalog must have, and those that can be added to one that lacks them
# (added after schema 1's first release, or nullable): the rest make the catalog damaged.
_CORE_COLUMNS = {"dest", "id", "size", "uploaded", "public"}
_NULLABLE_COLUMNS = {"sha256": "TEXT", "checksum": "TEXT", "storage_class": "TEXT", "toguid": "TEXT",
                     "fromguid": "TEXT", "snap_created": "INTEGER", "stream": "TEXT", "dataset": "TEXT",
                     "snapshot": "TEXT", "deleted": "REAL", "identity": "TEXT", "missing": "REAL",
                     "locked_until": "REAL", "lock_mode": "TEXT",
                     "version": "TEXT"}
_OUR_TABLES = {"archives", "uploads", "thaws", "catalog_copies", "capabilities", "checks"}


LOCKED_WAIT = 30.0  # seconds, as the busy timeout


def _while_locked(step):
    """Run ``step`` again while SQLite says "database is locked" without waiting itself: it does
    so when two commands open a new catalog at once (one switches it to WAL, or writes the schema,
    while the other starts): seen 1 run in ~30 of two zg-backups started together."""
    deadline = time.monotonic() + LOCKED_WAIT
    while True:
        try:
            return step()
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _rebuild_hint(path):
    return (f"`zg-catalog rebuild DEST --catalog {path} --key KEY` makes a new one from the destination "
            f"(and keeps the old file beside it)")


class Catalog:
    """A handle on the catalog file (mode 0600: it names datasets).

    ``write``: the command records (backups, uploads, deletions): the catalog is created when
    missing (``create``) and must be writable, checked before the command changes anything.
    Otherwise it only reads: a missing catalog is an error that names the way to rebuild it, and
    a read-only one (a read-only mount, a copy from elsewhere) is opened read-only; the few things
    a reader notes down (thaws requested) are then skipped.  Every open checks the file with
    SQLite's quick_check, so a damaged or foreign file is one clear line, never a guess."""

    def __init__(self, path, *, write=True, create=True):
        self.path, self.readonly = path, False
        if not os.path.exists(path):
            if not create:
                raise CatalogError(f"no catalog at {path}: {_rebuild_hint(path)}, or give --catalog PATH")
            self._create(path)
        try:
            self.db = self._connect(path, write)
            self.db.row_factory = sqlite3.Row
            self._check(path)
            self._migrate(path, write)
        except sqlite3.DatabaseError as err:
            raise DamagedCatalogError(f"catalog {path} is damaged or not a catalog ({err}): "
                                      f"{_rebuild_hint(path)}") from None
        except OSError as err:
            raise CatalogError(f"catalog {path}: {err.strerror}") from None

    @staticmethod
    def _create(path):
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        except FileExistsError:
            pass
        except OSError as err:
            raise CatalogError(f"cannot create the catalog {path}: {err.strerror}") from None

    def _connect(self, path, write):
        try:
            db = sqlite3.connect(path, timeout=30, isolation_level=None)
            _while_locked(lambda: db.execute("PRAGMA journal_mode=WAL"))
            return db
        except sqlite3.OperationalError as err:
            if write:
                raise CatalogError(f"catalog {path} cannot be written ({err}): this command records what it "
                                   f"does; make it writable, or give --catalog PATH") from None
        self.readonly = True  # a read-only file or filesystem: WAL needs its -shm file, so immutable
        return sqlite3.connect(f"file:{path}?immutable=1", uri=True, isolation_level=None)

    def _check(self, path):
        problems = [r[0] for r in self.db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise DamagedCatalogError(f"catalog {path} is damaged ({'; '.join(problems)[:200]}): "
                                      f"{_rebuild_hint(path)}")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogError(f"catalog {path} was written by a newer zfsglacier (schema {version}): upgrade "
                               f"zfsglacier to use it")
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "archives" not in tables:
            what = "damaged (its archives table is gone)" if tables & _OUR_TABLES or version else \
                f"not a zfsglacier catalog (it has tables {', '.join(sorted(tables)[:5])})"
            raise DamagedCatalogError(f"catalog {path} is {what}: {_rebuild_hint(path)}")
        have = {r[1] for r in self.db.execute("PRAGMA table_info(archives)")}
        if have and _CORE_COLUMNS - have:
            raise DamagedCatalogError(f"catalog {path} is damaged (its archives table has no "
                               f"{', '.join(sorted(_CORE_COLUMNS - have))} column): {_rebuild_hint(path)}")
        self._missing_columns = {n: t for n, t in _NULLABLE_COLUMNS.items() if have and n not in have}

    def _migrate(self, path, write):
        try:
            _while_locked(lambda: self.db.executescript(SCHEMA))
            for name, kind in self._missing_columns.items():
                self.db.execute(f"ALTER TABLE archives ADD COLUMN {name} {kind}")
            if "command" not in {r[1] for r in self.db.execute("PRAGMA table_info(uploads)")}:
                self.db.execute("ALTER TABLE uploads ADD COLUMN command TEXT")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.OperationalError as err:
            if write or "readonly" not in str(err):
                raise CatalogError(f"catalog {path} cannot be written ({err}): this command records what it "
                                   f"does; make it writable, or give --catalog PATH") from None
            self.readonly = True
            if self._missing_columns:
                raise CatalogError(f"catalog {path} is read-only and needs columns an older zfsglacier did not "
                                   f"write ({', '.join(self._missing_columns)}): open it writable once") from None

    @classmethod
    def replace(cls, path):
        """Move a damaged or foreign catalog aside (PATH.damaged-TIME, with its -wal/-shm) and
        start an empty one there; returns (catalog, where the old one went)."""
        aside = f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, aside + suffix)
        return cls(path), aside

    def close(self):
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- archives ---------------------------------------------------------------------------

    def record(self, dest, info, *, dataset=None, snapshot=None, uploaded=None, identity=None, source="upload",
               missing=None):
        """Record a complete, verified archive (``info`` is a stores.ArchiveInfo); ``uploaded``
        defaults to now (a rebuild passes the store's creation time).  Guids come from
        ``identity`` (a metadata.Identity from authenticated bytes) when given, else from the
        public metadata; ``source`` says which (shown by zg-ls, trusted by nobody blindly)."""
        public = PublicMetadata.parse(info.metadata)
        toguid, fromguid, stream = public.toguid, public.fromguid, public.stream
        if identity is not None and identity.toguid is not None:
            toguid, fromguid, stream = identity.toguid, identity.fromguid, identity.stream
        self.db.execute(
            "INSERT OR REPLACE INTO archives (dest, id, size, sha256, checksum, uploaded, storage_class,"
            " toguid, fromguid, snap_created, stream, dataset, snapshot, public, deleted, identity, missing,"
            " locked_until, lock_mode, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,?,?,?,?,?)",
            (dest, info.id, info.size, info.sha256, info.checksum, uploaded or time.time(),
             info.storage_class, _text(toguid), _text(fromguid), public.snap_created, stream,
             dataset, snapshot, json.dumps(info.metadata, sort_keys=True), source, missing,
             info.locked_until, info.lock_mode, getattr(info, "version", None)))

    def archives(self, dest=None, *, include_deleted=False):
        q, args = "SELECT * FROM archives WHERE 1=1", []
        if dest is not None:
            q += " AND dest=?"
            args.append(dest)
        if not include_deleted:
            q += " AND deleted IS NULL"
        q += " ORDER BY snap_created, uploaded, rowid"
        return [_row(r) for r in self.db.execute(q, args)]

    def get(self, dest, archive_id):
        r = self.db.execute("SELECT * FROM archives WHERE dest=? AND id=?", (dest, archive_id)).fetchone()
        return _row(r) if r else None

    def mark_missing(self, dest, archive_id, when):
        """The store did not list it (as of ``when``); a reader of a read-only catalog skips this."""
        if not self.readonly:
            self.db.execute("UPDATE archives SET missing=? WHERE dest=? AND id=? AND missing IS NULL",
                            (when, dest, archive_id))

    def mark_present(self, dest, archive_id):
        if not self.readonly:
            self.db.execute("UPDATE archives SET missing=NULL WHERE dest=? AND id=?", (dest, archive_id))

    def retained(self, dest, archive_id, until, mode):
        """The server now keeps it locked until ``until`` (``Store.retain``'s answer)."""
        self.db.execute("UPDATE archives SET locked_until=?, lock_mode=? WHERE dest=? AND id=?",
                        (until, mode, dest, archive_id))

    def mark_deleted(self, dest, archive_id, when=None):
        self.db.execute("UPDATE archives SET deleted=? WHERE dest=? AND id=?",
                        (when or time.time(), dest, archive_id))

    # --- uploads in progress ----------------------------------------------------------------

    def upload_started(self, dest, token, public, command="zg-upload"):
        self.db.execute("INSERT OR REPLACE INTO uploads (dest, token, started, public, command) VALUES (?,?,?,?,?)",
                        (dest, token, time.time(), json.dumps(public, sort_keys=True), command))

    def upload_ended(self, dest, token):
        self.db.execute("DELETE FROM uploads WHERE dest=? AND token=?", (dest, token))

    def uploads_resumed(self, dest, public):
        """A --resume completed the upload that was started with these public fields."""
        self.db.execute("DELETE FROM uploads WHERE dest=? AND public=?", (dest, json.dumps(public, sort_keys=True)))

    def uploads_forgotten(self, dest, before):
        """zg-rm --incomplete freed the store's incomplete uploads started before ``before``."""
        self.db.execute("DELETE FROM uploads WHERE dest=? AND started<?", (dest, before))

    def uploads(self, dest=None):
        q = "SELECT * FROM uploads" + (" WHERE dest=?" if dest else "")
        return [dict(r) for r in self.db.execute(q, (dest,) if dest else ())]

    # --- thaws ------------------------------------------------------------------------------

    def thaw_requested(self, dest, archive_id, tier, days, state, detail):
        if self.readonly:
            return
        self.db.execute(
            "INSERT INTO thaws VALUES (?,?,?,?,?,?,?) ON CONFLICT (dest, id) DO UPDATE SET state=excluded.state,"
            " detail=excluded.detail", (dest, archive_id, tier, days, time.time(), state, detail))

    def thaw_done(self, dest, archive_id):
        if self.readonly:
            return
        self.db.execute("DELETE FROM thaws WHERE dest=? AND id=?", (dest, archive_id))

    def thaws(self, dest=None):
        q = "SELECT * FROM thaws" + (" WHERE dest=?" if dest else "")
        return [dict(r) for r in self.db.execute(q, (dest,) if dest else ())]

    # --- what was read back (zg-verify, zg-drill) ---------------------------------------------

    def checked(self, dest, archive_id, kind, result, detail=None, when=None):
        """Note that ``archive_id`` was read back by ``kind`` (verify | drill) with ``result``."""
        if self.readonly:
            return
        self.db.execute("INSERT INTO checks VALUES (?,?,?,?,?,?)",
                        (dest, archive_id, kind, time.time() if when is None else when, result, detail))

    def forget_checks(self, dest, kind, result):
        """Drop the notes of ``kind`` with ``result`` (a drill's "pending" once it has finished)."""
        if not self.readonly:
            self.db.execute("DELETE FROM checks WHERE dest=? AND kind=? AND result=?", (dest, kind, result))

    def checks(self, dest, kind=None):
        """Every check noted for ``dest`` (of ``kind``), oldest first."""
        q = "SELECT * FROM checks WHERE dest=?" + (" AND kind=?" if kind else "") + " ORDER BY finished"
        return [dict(r) for r in self.db.execute(q, (dest, kind) if kind else (dest,))]

    # --- copies of the catalog itself ---------------------------------------------------------

    def probed(self, dest, found):
        """Record what zg-doctor found (``Store.capabilities()``) for ``dest``."""
        self.db.execute("INSERT INTO capabilities VALUES (?,?,?) ON CONFLICT (dest) DO UPDATE SET "
                        "probed=excluded.probed, found=excluded.found", (dest, time.time(), json.dumps(found)))

    def copy_uploaded(self, dest, copy_id):
        self.db.execute("INSERT OR REPLACE INTO catalog_copies VALUES (?,?,?)", (dest, copy_id, time.time()))

    def copies(self, dest):
        """Ids of the catalog copies at ``dest``, oldest first."""
        return [r[0] for r in self.db.execute(
            "SELECT id FROM catalog_copies WHERE dest=? ORDER BY uploaded", (dest,))]

    def copy_stale(self, dest):
        """An archive was recorded after the newest catalog copy at ``dest`` was uploaded (or
        there is none): a copy is due."""
        newest = self.db.execute("SELECT max(uploaded) FROM catalog_copies WHERE dest=?", (dest,)).fetchone()[0]
        latest = self.db.execute("SELECT max(uploaded) FROM archives WHERE dest=? AND deleted IS NULL",
                                 (dest,)).fetchone()[0]
        return latest is not None and (newest is None or latest > newest)

    def copy_deleted(self, dest, copy_id):
        self.db.execute("DELETE FROM catalog_copies WHERE dest=? AND id=?", (dest, copy_id))


def _peek(path, query, args):
    """One row of a query on the catalog at ``path``, read without opening it as a Catalog:
    read-only, no migration, no check, nothing written, so that it can run before a command takes
    its lock (a Catalog's open writes its schema, and two runs at once raced there).  Anything
    unreadable is None."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        return db.execute(query, args).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()


def probed_capabilities(path, dest):
    """What zg-doctor recorded for ``dest`` in the catalog at ``path`` (``_peek``); anything
    unreadable is "nothing recorded"."""
    row = _peek(path, "SELECT found FROM capabilities WHERE dest=?", (dest,))
    try:
        found = json.loads(row[0]) if row else {}
    except (ValueError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


def records_archives(path, dest):
    """Does the catalog at ``path`` record any archive at ``dest`` (``_peek``; unreadable: no)."""
    return _peek(path, "SELECT 1 FROM archives WHERE dest=? LIMIT 1", (dest,)) is not None


def catalog_path(path=None, config=None):
    """``path``, else $ZG_CATALOG, else the configured or default location."""
    if path is None:
        path = os.environ.get("ZG_CATALOG")
    if path is None:
        from ..config import load_config
        path = (config or load_config()).catalog
    return path


def open_catalog(path=None, config=None, *, write=True, create=True):
    """The catalog at catalog_path(path, config)."""
    return Catalog(catalog_path(path, config), write=write, create=create)
