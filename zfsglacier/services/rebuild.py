"""Rebuild the catalog of a destination from the destination alone, trusting only what is
authenticated.

Without a key: every archive with its public fields (sizes, guids, times), so chains and
incremental planning work; the guids are the store's word (``identity`` = metadata).  With a key:
names *and guids* from the header copy in each archive's metadata, once its MAC is checked (nothing
to thaw), else from the newest encrypted catalog copy that zg-backup uploads.  A header copy is
not tied to the object it sits on, so zg-restore later requires the fetched archive's header to be
that very copy, byte for byte, before anything reaches `zfs receive`.

What the store says and the authenticated bytes disagree on is reported, not believed; an object
whose fields are not of their documented form is reported and skipped; archives that the newest
catalog copy lists but the store no longer shows are recorded as missing (hidden or deleted), so
restore says so instead of quietly using an older archive.
"""

import io
import time
from dataclasses import dataclass, field

from ..format import archive
from ..errors import ZgError
from ..format.header import read_header
from ..format.keys import check_signature, open_header
from ..format.metadata import CATALOG_KIND, CatalogCopy, Identity, MetadataError, PublicMetadata, printable
from ..stores import ArchiveInfo


@dataclass
class Report:
    archives: int = 0
    named: int = 0
    verified: int = 0  # identity from a MAC-checked header copy or the catalog copy
    skipped: list = field(default_factory=list)  # (id, why): objects not of the documented form
    disagree: list = field(default_factory=list)  # ids whose public guids are not the authenticated ones
    missing: list = field(default_factory=list)  # (id, name) listed by the catalog copy, not in the store
    copy_written: float | None = None  # when the catalog copy used was written
    copy_pending: str | None = None  # the newest catalog copy, asked to thaw: not readable yet


def identity_from_header_copy(raw, identities, signers=()):
    """(Identity, header) from a header copy whose MAC a key checks (and, with ``signers``, that a
    required signer signed); None otherwise."""
    try:
        header = read_header(io.BytesIO(raw))
        check_signature(header, signers)
        file_key = open_header(header, identities)
        ident = Identity.of_header(header, archive.read_private_metadata(header, file_key))
    except (ZgError, ValueError):
        return None
    return (ident, header) if ident is not None else None


SAME_SECOND = 2.0  # seconds: store dates this close cannot order two copies


def newest_catalog_copy(store, copies, identities, signers=(), report=None):
    """The newest catalog copy a key opens, as a CatalogCopy (None when there is none).  A copy in
    a cold class (a vault) is asked to thaw, and ``report.copy_pending`` names it: until it is
    readable, hidden archives cannot be told from deleted ones.

    Newest by the time written inside the copy (authenticated, sub-second): a store's own time has
    one-second steps (S3's LastModified), and two copies made within a second came back in either
    order, so the older one (without the newest archive) was taken about half the time and a
    hidden archive went unnoticed.  Copies the store dates within SAME_SECOND of the first
    readable one are read too, and the latest written wins."""
    best = None
    for info in sorted(copies, key=lambda a: -a.created):
        if best is not None and info.created < best[0] - SAME_SECOND:
            break
        status = store.thaw_status(info.id, version=info.version)
        if status.state not in ("ready", "thawed"):
            if status.state == "frozen":
                store.request_thaw(info.id, version=info.version)
            if report is not None:
                report.copy_pending = info.id
            return None
        try:
            out = io.BytesIO()
            with store.open_read(info.id) as reader:
                archive.decrypt(reader, out, identities, signers=signers)
            copy = CatalogCopy.decode(out.getvalue())
        except ZgError:
            continue
        copy.written = copy.written or info.created
        if best is None or copy.written > best[1].written:
            best = (info.created if best is None else best[0], copy)
    return best[1] if best is not None else None


def _copy_identity(row):
    if row.get("toguid") is None:
        return None
    return Identity(int(row["toguid"]), int(row.get("fromguid") or 0), row.get("dataset"), row.get("snapshot"),
                    row.get("stream") or "plain")


def rebuild(store, cat, dest, identities=(), signers=()):
    """Record every archive of ``store`` in ``cat``; returns a Report."""
    report = Report()
    copies, archives = [], []
    started = time.time()
    for info in store.list():
        try:
            public = PublicMetadata.parse(info.metadata)
        except MetadataError as err:
            report.skipped.append((printable(info.id), str(err)))
            continue
        (copies if public.kind == CATALOG_KIND else archives).append((info, public))
    report.skipped.extend(store.problems)
    copy = newest_catalog_copy(store, [i for i, _ in copies], identities, signers, report) \
        if identities and copies else None
    from_copy = {r["id"]: r for r in copy.rows} if copy else {}
    report.copy_written = copy.written if copy else None
    for info, public in archives:
        ident, source, uploaded = None, "metadata", info.created
        found = identity_from_header_copy(public.header, identities, signers) if identities and public.header else None
        if found is not None:
            (ident, header), source = found, "header"
            uploaded = header.created  # authenticated, unlike the store's own date
        elif info.id in from_copy and _copy_identity(from_copy[info.id]) is not None:
            ident, source = _copy_identity(from_copy[info.id]), "copy"
        else:  # what this host recorded itself outranks what the store says now
            known = cat.get(dest, info.id)
            if known is not None and known.identity != "metadata" and known.toguid is not None:
                ident = Identity(known.toguid, known.fromguid or 0, known.dataset, known.snapshot,
                                 known.stream or "plain")
                source = known.identity or "upload"
        if ident is not None and ident.toguid is not None and (public.toguid, public.fromguid or 0) != (
                ident.toguid, ident.fromguid):
            report.disagree.append(info.id)
        names = (ident.dataset, ident.snapshot) if ident is not None and ident.name else (None, None)
        cat.record(dest, info, dataset=names[0], snapshot=names[1], uploaded=uploaded, identity=ident,
                   source=source)
        report.archives += 1
        report.named += bool(names[0])
        report.verified += source != "metadata"
    listed = {info.id for info, _ in archives}
    for row in from_copy.values():
        if row.get("deleted") is None and row["id"] not in listed:
            _record_missing(cat, dest, row, report)
    copied = {i for i, _ in report.missing}
    for row in reconcile(cat, dest, listed, _as_of(store, started)).missing:
        if row.id not in copied:  # this host's own record of it, not in the store any more
            report.missing.append((row.id, row.name))
    return report


@dataclass
class Check:
    """How the catalog and a listing of the store compare (zg-catalog check)."""

    as_of: float = 0.0  # when the listing was true (a vault's inventory date)
    present: int = 0
    missing: list = field(default_factory=list)  # catalog rows the store does not list
    back: list = field(default_factory=list)  # rows marked missing before, listed again now
    unknown: list = field(default_factory=list)  # ids the store lists and the catalog does not know


def reconcile(cat, dest, listed, as_of, result=None):
    """Mark the catalog's live rows for ``dest`` missing when ``listed`` (the ids a listing made
    at ``as_of`` shows) lacks them, and present when it has them again.  Rows recorded after the
    listing was made are left alone (a vault inventory can be a day old)."""
    result = result or Check(as_of=as_of)
    for row in cat.archives(dest):
        if row.id in listed:
            result.present += 1
            if row.missing:
                cat.mark_present(dest, row.id)
                result.back.append(row)
        elif row.uploaded < as_of:
            cat.mark_missing(dest, row.id, row.missing or as_of)
            result.missing.append(row)
    return result


def check(store, cat, dest):
    """List the store (no thaw, no data read) and reconcile the catalog with it."""
    started = time.time()
    infos = list(store.list())
    result = Check(as_of=_as_of(store, started))
    listed = {i.id for i in infos}
    reconcile(cat, dest, listed, result.as_of, result)
    known = {r.id for r in cat.archives(dest, include_deleted=True)} | set(cat.copies(dest))
    for info in infos:
        if info.id not in known and _kind(info) != CATALOG_KIND:
            result.unknown.append(info.id)
    return result


def _as_of(store, started):
    return started if store.listed_as_of is None else store.listed_as_of


def _kind(info):
    try:
        return PublicMetadata.parse(info.metadata).kind
    except MetadataError:
        return None


def _record_missing(cat, dest, row, report):
    """An archive the catalog copy lists and the store does not show: recorded as missing."""
    try:
        public = dict(row.get("public") or {})
        PublicMetadata.parse(public)
    except MetadataError:
        public = {}
    info = ArchiveInfo(row["id"], row.get("size") or 0, row.get("sha256"), row.get("uploaded") or 0, public,
                       row.get("storage_class") or "", "missing", checksum=row.get("checksum"))
    cat.record(dest, info, dataset=row.get("dataset"), snapshot=row.get("snapshot"), uploaded=info.created,
               identity=_copy_identity(row), source="copy", missing=report.copy_written)
    name = f"{row['dataset']}@{row['snapshot']}" if row.get("dataset") else row["id"]
    report.missing.append((row["id"], name))
