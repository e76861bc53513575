"""zg-backup's work: pick what to send, then zfs send | encrypt | upload | record, in one process.

No temporary files: ``zfs send`` stdout is read by the encryptor, whose output goes straight into
the store upload.  The upload is committed only after ``zfs send`` exited 0 and the archive's
trailer is written, so a failed send never leaves an archive recorded as complete.
"""

import io
import time
from dataclasses import dataclass

from . import archive, chains, cost
from .errors import NotFoundError, UsageError, ZgError
from .metadata import CatalogCopy, PublicMetadata, store_fields
from .pipes import PeekReader

HOLD_TAG = "zfsglacier"


@dataclass
class Step:
    """One archive to make: ``target`` sent full, or incrementally from ``base``."""

    dataset: str
    target: object  # zfs.Snapshot
    base: object = None  # zfs.Snapshot or None
    reason: str = ""
    estimate: int | None = None

    @property
    def kind(self):
        return "incremental" if self.base else "full"


def auto_snapshot_name(now=None):
    return time.strftime("zg-%Y%m%dT%H%M%SZ", time.gmtime(now))


def plan_dataset(zfs, cat, dest, dataset, *, snapshot_name=None, full_every=None, full_if_older=None, now=None,
                 planned_snapshot=None):
    """The Step that brings ``dest`` up to date for ``dataset``, or None if it already is.

    ``planned_snapshot``: a snapshot --dry-run would take first (it does not exist yet)."""
    now = now or time.time()
    snaps = zfs.snapshots(dataset)
    if planned_snapshot:
        from .zfs import Snapshot
        snaps.append(Snapshot(f"{dataset}@{planned_snapshot}", -1, int(now), 1 << 62))
        snapshot_name = planned_snapshot
    if snapshot_name:
        match = [s for s in snaps if s.short == snapshot_name]
        if not match:
            raise NotFoundError(f"{dataset}@{snapshot_name} does not exist")
        target = match[0]
    elif snaps:
        target = snaps[-1]
    else:
        raise NotFoundError(f"{dataset} has no snapshot to back up (use --snapshot auto to take one)")
    archives = cat.archives(dest)
    by_guid = chains.by_toguid(archives)
    if target.guid in by_guid:
        return None
    older = [s for s in snaps if (s.createtxg or 0, s.creation) < (target.createtxg or 0, target.creation)]
    base = next((s for s in reversed(older) if s.guid in by_guid), None)
    reason = "no earlier snapshot of it is archived" if base is None else f"from {base.short}"
    if base is not None:
        try:
            chain = chains.chain_to(archives, base.guid)
        except NotFoundError:
            base, reason = None, f"the chain to {base.short} is broken at the destination"
        else:
            if full_every and len(chain.archives) >= full_every:
                base, reason = None, f"the chain has {len(chain.archives)} archives (--full-every {full_every})"
            elif full_if_older and now - chain.archives[0].uploaded > full_if_older:
                base, reason = None, "the chain's full is older than --full-if-older-than"
    return Step(dataset, target, base, reason, estimate_size(zfs, target, base))


def estimate_size(zfs, target, base):
    """Bytes the send will roughly produce (zfs-fuse has no `zfs send -nP`): referenced for a full,
    `written@base` for an incremental where the property exists."""
    try:
        if base is None:  # a snapshot --dry-run has not taken yet refers to what the dataset refers to
            name = target.dataset if target.guid == -1 else target.name
            return int(zfs.get(name, "referenced")["referenced"])
        return int(zfs.get(target.name, f"written@{base.short}")[f"written@{base.short}"])
    except (ZgError, ValueError, KeyError):
        return None


def run_step(zfs, store, cat, dest, step, recipients, *, algorithm, level, jobs, hold=True, threads=-1,
             intermediates=False, sign=None):
    """Send, encrypt, upload and record one Step; returns (ArchiveInfo, archive.Result).

    With ``intermediates`` an incremental is `zfs send -I`: a compound stream whose header names no
    guids, so the archive's metadata carries the base's and the target's (the chain needs them)."""
    intermediates = intermediates and step.base is not None
    send = zfs.send(step.target.name, from_snap=step.base.name if step.base else None, intermediates=intermediates)
    checked = False
    try:
        src = PeekReader(send.stdout)
        declared = (step.target.guid, step.base.guid) if intermediates else None
        prep = archive.prepare(src, recipients, algorithm=algorithm, level=level, declared=declared, sign=sign)
        ident = prep.identity
        expected = ident is not None and (
            (ident.header_type == "compound" and ident.toname == step.target.name) if intermediates
            else ident.toguid == step.target.guid)
        if not expected:
            raise UsageError(f"zfs send of {step.target.name} did not produce the expected stream")
        metadata = store_fields(prep.header, declared=declared,
                                snap_created=step.target.creation if intermediates else None)
        with store.open_upload(metadata, jobs=jobs) as up:
            result = archive.write_archive(prep, up, threads=threads)
            checked = True
            send.check()  # a failed zfs send must never become a complete archive
            info = up.commit()
    finally:
        if not checked:  # something failed first: stop zfs send, keep the first error
            send.kill()
            try:
                send.check()
            except ZgError:
                pass
    cat.record(dest, info, dataset=step.dataset, snapshot=step.target.short)
    if hold:
        move_hold(zfs, step)
    return info, result


def move_hold(zfs, step):
    """Hold the snapshot just archived (the next incremental's base) and release the old base."""
    try:
        zfs.hold(HOLD_TAG, step.target.name)
    except ZgError:
        pass  # already held, or holds unsupported: never fail a completed backup over it
    if step.base is not None:
        try:
            zfs.release(HOLD_TAG, step.base.name)
        except ZgError:
            pass


def describe_step(step, dest_class):
    est = step.estimate
    size = cost.human_bytes(est) if est is not None else "unknown size"
    monthly = cost.dollars(cost.monthly_storage(est, dest_class)) + "/month" if est is not None else "?"
    return f"{step.dataset}@{step.target.short}: {step.kind} ({step.reason}), about {size}, {monthly}"


# --- the catalog travels with the backups ------------------------------------------------------

CATALOG_KIND = "catalog"
CATALOG_COPIES = 3


def upload_catalog(store, cat, dest, recipients, *, jobs=4, sign=None):
    """Upload the catalog's rows for ``dest``, encrypted, so a lost host needs only key + destination."""
    rows = [CatalogCopy.row_of(r) for r in cat.archives(dest, include_deleted=True)]
    body = CatalogCopy(dest, rows, written=time.time()).encode()
    out = io.BytesIO()
    result = archive.encrypt(io.BytesIO(body), out, recipients, algorithm="zstd", level=9, sign=sign)
    public = PublicMetadata.of_header(result.header)
    public.kind = CATALOG_KIND
    meta = public.fields()
    info = store.upload(io.BytesIO(out.getvalue()), meta, jobs=jobs)
    cat.copy_uploaded(dest, info.id)
    olds = cat.copies(dest)  # listed locally: a vault listing would need an inventory job
    for old in olds[:max(0, len(olds) - CATALOG_COPIES)]:
        try:
            store.delete(old)
        except ZgError:
            continue
        cat.copy_deleted(dest, old)
    return info
