"""zg-backup's work: pick what to send, then zfs send | encrypt | upload | record, in one process.

No temporary files: ``zfs send`` stdout is read by the encryptor, whose output goes straight into
the store upload.  The upload is committed only after ``zfs send`` exited 0 and the archive's
trailer is written, so a failed send never leaves an archive recorded as complete.
"""

import hashlib
import io
import secrets
import time
from dataclasses import dataclass

from ..format import archive
from ..catalog import chains
from . import cost
from ..errors import CatalogError, DatasetNotFoundError, NotFoundError, UsageError, ZfsMissingError, ZgError
from ..format.metadata import CATALOG_KIND, CatalogCopy, PublicMetadata, store_fields
from ..plumbing.pipes import PeekReader

LEGACY_HOLD_TAG = "zfsglacier"  # zfsglacier < 0.4: one tag for every destination


def hold_tag(dest):
    """The `zfs hold` tag that keeps a snapshot alive for one destination: readable in `zfs holds`
    (the destination's URL), hashed only when it would pass ZFS's tag length limit."""
    tag = f"zfsglacier:{dest}"
    return tag if len(tag) <= 200 else f"zfsglacier:{hashlib.sha256(dest.encode()).hexdigest()[:24]}"


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


def check_first_backup(store, catalog_path, dest):
    """No catalog at ``catalog_path``: a first backup, or a lost catalog?  A destination that
    already holds archives means lost (every chain would start again with a full): refused.
    Returns a warning where the store cannot be listed at once (a vault), else None."""
    if not store.properties.lists_at_once:
        return (f"no catalog at {catalog_path}: starting a new one; if {dest} already holds backups from here, "
                f"stop this and run `zg-catalog rebuild {dest} --key KEY` (else every chain starts with a full)")
    for _ in store.list():
        raise CatalogError(f"no catalog at {catalog_path}, but {dest} already holds archives: run "
                           f"`zg-catalog rebuild {dest} --catalog {catalog_path} --key KEY` first (without it "
                           f"every chain would start again with a full), or give --catalog PATH")
    return None


def take_snapshot(zfs, dataset, name, *, recursive=False):
    """Take DATASET@NAME; ``auto`` is zg-<UTC time>, made unique with -2, -3... when a run of the
    same second (another destination, say) took that name first.  Returns the name taken."""
    if name != "auto":
        zfs.snapshot(f"{dataset}@{name}", recursive=recursive)
        return name
    base = auto_snapshot_name()
    for n in range(1, 100):
        name = base if n == 1 else f"{base}-{n}"
        try:
            zfs.snapshot(f"{dataset}@{name}", recursive=recursive)
            return name
        except ZgError as err:
            if "exists" not in str(err):
                raise
    raise UsageError(f"cannot find a free snapshot name {base}-N for {dataset}")


def plan_dataset(zfs, cat, dest, dataset, *, snapshot_name=None, full_every=None, full_if_older=None, now=None,
                 planned_snapshot=None):
    """The Step that brings ``dest`` up to date for ``dataset``, or None if it already is.

    ``planned_snapshot``: a snapshot --dry-run would take first (it does not exist yet)."""
    now = now or time.time()
    snaps = zfs.snapshots(dataset)
    if planned_snapshot:
        from ..zfs import Snapshot
        snaps.append(Snapshot(f"{dataset}@{planned_snapshot}", None, int(now), 1 << 62, planned=True))
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
    if target.guid in chains.by_toguid(archives):
        return None
    older = [s for s in snaps if (s.createtxg or 0, s.creation) < (target.createtxg or 0, target.creation)]
    base, reason = next_base(older, archives, dataset)
    if base is not None:
        chain = chains.chain_to(archives, base.guid)
        if full_every and len(chain.archives) >= full_every:
            base, reason = None, f"the chain has {len(chain.archives)} archives (--full-every {full_every})"
        elif full_if_older and now - chain.archives[0].uploaded > full_if_older:
            base, reason = None, "the chain's full is older than --full-if-older-than"
    return Step(dataset, target, base, reason, estimate_size(zfs, target, base))


def next_base(snaps, archives, dataset):
    """(snapshot, reason): the newest of ``snaps`` (a dataset's snapshots, oldest first) that the
    destination's ``archives`` hold with a complete chain, the base of the next incremental; or
    (None, why there is none)."""
    by_guid = chains.by_toguid(archives)
    base = next((s for s in reversed(snaps) if s.guid in by_guid), None)
    if base is not None:
        try:
            chains.chain_to(archives, base.guid)
        except NotFoundError:
            return None, f"the chain to {base.short} is broken at the destination"
        return base, f"from {base.short}"
    ours = [a for a in archives if a.dataset == dataset and a.toguid is not None]
    if ours:
        last = max(ours, key=lambda a: (a.snap_created or 0, a.uploaded))
        return None, (f"{dataset}@{last.snapshot}, the last snapshot archived there, no longer exists on this "
                      f"host (destroyed or renamed away)")
    return None, "no earlier snapshot of it is archived"


def estimate_size(zfs, target, base):
    """Bytes the send will roughly produce (zfs-fuse has no `zfs send -nP`): referenced for a full,
    `written@base` for an incremental where the property exists."""
    try:
        if base is None:  # a snapshot --dry-run has not taken yet refers to what the dataset refers to
            name = target.dataset if target.planned else target.name
            return int(zfs.get(name, "referenced")["referenced"])
        return int(zfs.get(target.name, f"written@{base.short}")[f"written@{base.short}"])
    except (ZgError, ValueError, KeyError):
        return None


def run_step(zfs, store, cat, dest, step, recipients, *, algorithm, level, jobs, threads=-1,
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
        token = secrets.token_hex(8)
        try:
            with store.open_upload(metadata, jobs=jobs) as up:
                cat.upload_started(dest, token, metadata, command="zg-backup")  # stays listed if killed
                result = archive.write_archive(prep, up, threads=threads)
                checked = True
                send.check()  # a failed zfs send must never become a complete archive
                info = up.commit()
        finally:  # completed, or aborted by the `with`: no longer incomplete
            cat.upload_ended(dest, token)
    finally:
        if not checked:  # something failed first: stop zfs send, keep the first error
            send.kill()
            try:
                send.check()
            except ZgError:
                pass
    cat.record(dest, info, dataset=step.dataset, snapshot=step.target.short)
    return info, result


def keep_bases(zfs, cat, dataset):
    """Hold, for each destination of the catalog, exactly the snapshot of ``dataset`` that its
    next incremental starts from (next_base), with that destination's tag, and release that tag
    from every other snapshot: a new chain, zg-rm and zg-prune call this too, so an old tip is
    let go when no destination needs it any more.  The single tag of older versions is released
    once the per-destination holds are in place.  Returns warnings (never fails the caller: the
    archive is already recorded)."""
    warnings = []
    try:
        snaps = zfs.snapshots(dataset)
        refs = zfs.userrefs_all(dataset) if snaps else {}
    except (DatasetNotFoundError, ZfsMissingError):  # not on this host: nothing here to hold
        return warnings
    except ZgError as err:
        return [f"{dataset}: holds not updated: {err}"]
    guids = {s.guid for s in snaps}
    dests = sorted({a.dest for a in cat.archives() if a.dataset == dataset or a.toguid in guids})
    for dest in dests:
        base, _ = next_base(snaps, cat.archives(dest), dataset)
        tag = hold_tag(dest)
        for s in snaps:
            try:
                if base is not None and s.name == base.name:
                    zfs.hold(tag, s.name, exist_ok=True)
                elif refs.get(s.name):
                    zfs.release(tag, s.name, missing_ok=True)
            except ZgError as err:
                warnings.append(f"{s.name}: hold {tag!r} not updated: {err}")
    if not warnings:  # the old tag goes only once every new hold is in place
        for s in snaps:
            if refs.get(s.name):
                try:
                    zfs.release(LEGACY_HOLD_TAG, s.name, missing_ok=True)
                except ZgError as err:
                    warnings.append(f"{s.name}: old hold {LEGACY_HOLD_TAG!r} not released: {err}")
    return warnings


def describe_step(step, dest_class):
    est = step.estimate
    size = cost.human_bytes(est) if est is not None else "unknown size"
    monthly = cost.dollars(cost.monthly_storage(est, dest_class)) + "/month" if est is not None else "?"
    return f"{step.dataset}@{step.target.short}: {step.kind} ({step.reason}), about {size}, {monthly}"


# --- the catalog travels with the backups ------------------------------------------------------

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
