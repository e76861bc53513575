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

from .errors import UsageError
from .metadata import PublicMetadata

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
    PRIMARY KEY (dest, id)
);
CREATE INDEX IF NOT EXISTS archives_toguid ON archives (dest, toguid);
CREATE TABLE IF NOT EXISTS uploads (  -- started and not (yet) completed: what zg-ls calls incomplete
    dest TEXT NOT NULL, token TEXT NOT NULL, started REAL NOT NULL, public TEXT NOT NULL,
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


def _row(r):
    d = dict(r)
    d["public"] = json.loads(d["public"])
    for k in ("toguid", "fromguid"):
        d[k] = int(d[k]) if d[k] is not None else None
    return ArchiveRow(**d)


# Columns added after schema 1's first release: added to an older catalog when it is opened.
_ADDED_COLUMNS = {"identity": "TEXT", "missing": "REAL"}


class Catalog:
    """A handle on the catalog file (created on first use, mode 0600: it names datasets)."""

    def __init__(self, path):
        self.path = path
        d = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            new = not os.path.exists(path)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            if new:
                os.chmod(path, 0o600)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UsageError(f"catalog {path} was written by a newer zfsglacier (schema {version})")
            self.db.executescript(SCHEMA)
            have = {r[1] for r in self.db.execute("PRAGMA table_info(archives)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE archives ADD COLUMN {name} {kind}")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as err:
            raise UsageError(f"catalog {path}: {err}") from None
        except OSError as err:
            raise UsageError(f"catalog {path}: {err.strerror}") from None

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
            " toguid, fromguid, snap_created, stream, dataset, snapshot, public, deleted, identity, missing)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,?,?)",
            (dest, info.id, info.size, info.sha256, info.checksum, uploaded or time.time(),
             info.storage_class, _text(toguid), _text(fromguid), public.snap_created, stream,
             dataset, snapshot, json.dumps(info.metadata, sort_keys=True), source, missing))

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

    def mark_deleted(self, dest, archive_id, when=None):
        self.db.execute("UPDATE archives SET deleted=? WHERE dest=? AND id=?",
                        (when or time.time(), dest, archive_id))

    # --- uploads in progress ----------------------------------------------------------------

    def upload_started(self, dest, token, public):
        self.db.execute("INSERT OR REPLACE INTO uploads VALUES (?,?,?,?)",
                        (dest, token, time.time(), json.dumps(public, sort_keys=True)))

    def upload_ended(self, dest, token):
        self.db.execute("DELETE FROM uploads WHERE dest=? AND token=?", (dest, token))

    def uploads_resumed(self, dest, public):
        """A --resume completed the upload that was started with these public fields."""
        self.db.execute("DELETE FROM uploads WHERE dest=? AND public=?", (dest, json.dumps(public, sort_keys=True)))

    def uploads(self, dest=None):
        q = "SELECT * FROM uploads" + (" WHERE dest=?" if dest else "")
        return [dict(r) for r in self.db.execute(q, (dest,) if dest else ())]

    # --- thaws ------------------------------------------------------------------------------

    def thaw_requested(self, dest, archive_id, tier, days, state, detail):
        self.db.execute(
            "INSERT INTO thaws VALUES (?,?,?,?,?,?,?) ON CONFLICT (dest, id) DO UPDATE SET state=excluded.state,"
            " detail=excluded.detail", (dest, archive_id, tier, days, time.time(), state, detail))

    def thaw_done(self, dest, archive_id):
        self.db.execute("DELETE FROM thaws WHERE dest=? AND id=?", (dest, archive_id))

    def thaws(self, dest=None):
        q = "SELECT * FROM thaws" + (" WHERE dest=?" if dest else "")
        return [dict(r) for r in self.db.execute(q, (dest,) if dest else ())]

    # --- copies of the catalog itself ---------------------------------------------------------

    def copy_uploaded(self, dest, copy_id):
        self.db.execute("INSERT OR REPLACE INTO catalog_copies VALUES (?,?,?)", (dest, copy_id, time.time()))

    def copies(self, dest):
        """Ids of the catalog copies at ``dest``, oldest first."""
        return [r[0] for r in self.db.execute(
            "SELECT id FROM catalog_copies WHERE dest=? ORDER BY uploaded", (dest,))]

    def copy_deleted(self, dest, copy_id):
        self.db.execute("DELETE FROM catalog_copies WHERE dest=? AND id=?", (dest, copy_id))


def open_catalog(path=None, config=None):
    """The catalog at ``path``, else $ZG_CATALOG, else the configured or default location."""
    if path is None:
        path = os.environ.get("ZG_CATALOG")
    if path is None:
        from .config import load_config
        path = (config or load_config()).catalog
    return Catalog(path)
