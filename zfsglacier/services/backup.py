"""zg-backup's work: pick what to send, then zfs send | encrypt | upload | record, in one process.

No temporary files: ``zfs send`` stdout is read by the encryptor, whose output goes straight into
the store upload.  The upload is committed only after ``zfs send`` exited 0 and the archive's
trailer is written, so a failed send never leaves an archive recorded as complete.
"""

import hashlib
import io
import os
import secrets
import time
from dataclasses import dataclass

from ..format import archive, compression
from ..catalog import chains
from . import cost, resume as resumes, retention
from ..errors import (CatalogError, DatasetNotFoundError, NotFoundError, ResumeMismatchError, StoreError, UsageError,
                      ZfsMissingError, ZgError)
from ..format.metadata import CATALOG_KIND, CatalogCopy, PublicMetadata, store_fields
from ..plumbing.pipes import PeekReader
from ..zfs import SendFlags, Snapshot
from .watch import NOBODY, Counted

LEGACY_HOLD_TAG = "zfsglacier"  # zfsglacier < 0.4: one tag for every destination


def hold_tag(dest):
    """The `zfs hold` tag that keeps a snapshot alive for one destination: readable in `zfs holds`
    (the destination's URL), hashed only when it would pass ZFS's tag length limit."""
    tag = f"zfsglacier:{dest}"
    return tag if len(tag) <= 200 else f"zfsglacier:{hashlib.sha256(dest.encode()).hexdigest()[:24]}"


def bookmark_name(dest, snap):
    """The bookmark zg-backup keeps of the last snapshot archived at ``dest``:
    ``pool/ds#zg-<8 hex of the destination>-<snapshot>`` (a bookmark name has no room for a URL)."""
    tag = hashlib.sha256(dest.encode()).hexdigest()[:8]
    name = f"{snap.dataset}#zg-{tag}-{snap.short}"
    return name if len(name) <= 255 else f"{snap.dataset}#zg-{tag}-{snap.guid:x}"


def _bookmark_prefix(dest, dataset):
    return f"{dataset}#zg-{hashlib.sha256(dest.encode()).hexdigest()[:8]}-"


def has_bookmarks(zfs, dataset):
    """Whether the pool of ``dataset`` can keep bookmarks (OpenZFS feature ``bookmarks``)."""
    try:
        features = zfs.pool_features(dataset.split("/", 1)[0])
    except ZgError:
        return False
    return bool(features) and features.get("bookmarks") in ("enabled", "active")


def sources(zfs, dataset, archives, snaps=None, bookmarks=None):
    """What an incremental of ``dataset`` can start from, oldest first: its snapshots, and the
    archived snapshots that are gone but live on as a bookmark (any bookmark with the snapshot's
    guid: a bookmark keeps it), named as the archive names them.  ``snaps`` and ``bookmarks``:
    the dataset's, when the caller has listed them already (keep_bases, once per destination)."""
    snaps = zfs.snapshots(dataset) if snaps is None else snaps
    have = {s.guid for s in snaps}
    archived = chains.by_toguid(archives)
    kept = {}
    for b in zfs.bookmarks(dataset) if bookmarks is None else bookmarks:
        if b.guid in have or b.guid not in archived or b.guid in kept:
            continue
        row = archived[b.guid][0]
        kept[b.guid] = Snapshot(f"{dataset}@{row.snapshot or f'guid:{b.guid}'}", b.guid, b.creation, b.createtxg,
                                bookmark=b.name)
    return sorted(snaps + list(kept.values()), key=lambda s: (s.createtxg or 0, s.creation))


def send_flags(zfs, dataset, chain_full=None, *, raw=None, compressed=False, props=False, replicate=False):
    """(SendFlags, encryption properties or None, why raw) for the next archive of ``dataset``.

    A chain keeps the flags of its full (``chain_full``: its catalog row), so that an incremental
    never switches -L or -w under a chain a receiver started without them (switching -L on has
    zeroed files on older receivers: OpenZFS's SWITCH_TO_LARGE_BLOCKS).  A full takes -L and -e
    where the pool has large_blocks / embedded_data, -c only when asked (``compressed``: it hands
    zstd blocks ZFS already compressed), and -w when asked (``raw``) or when the dataset is
    encrypted and its key is not loaded (a plain send then cannot read it); -p when asked
    (``props``: the dataset's properties travel too; zg-restore never takes ``mountpoint``); -R
    when asked (``replicate``: the dataset and its tree, see plan_dataset)."""
    enc = zfs.encryption(dataset)
    locked = enc is not None and enc.get("keystatus") != "available"
    if chain_full is not None:
        used = chain_full.meta.send_flags
        flags = SendFlags(raw=chain_full.meta.raw, large_blocks="-L" in used, embedded="-e" in used,
                          compressed="-c" in used, props="-p" in used, replicate="-R" in used)
        return flags, enc, ("the chain is raw" if flags.raw else "")
    try:
        features = zfs.pool_features(dataset.split("/", 1)[0]) or {}
    except ZgError:
        features = {}
    on = {k for k, v in features.items() if v in ("enabled", "active")}
    want_raw = bool(raw) or (raw is None and locked)
    why = ("--raw" if raw else f"{dataset} is encrypted and its key is not loaded") if want_raw else ""
    if want_raw:
        return SendFlags(raw=True, props=props, replicate=replicate), enc, why
    return SendFlags(large_blocks="large_blocks" in on, embedded="embedded_data" in on,
                     compressed=compressed and "lz4_compress" in on, props=props, replicate=replicate), enc, why


@dataclass
class Step:
    """One archive to make: ``target`` sent full, or incrementally from ``base``, with ``flags``."""

    dataset: str
    target: object  # zfs.Snapshot
    base: object = None  # zfs.Snapshot or None
    reason: str = ""
    estimate: int | None = None  # bytes zfs send will write (progress's total; the plan's size)
    flags: SendFlags = SendFlags()
    encryption: dict | None = None  # the dataset's encryption properties (zfs.encryption)
    tree: dict | None = None  # --replicate: replicated_tree
    estimated_by: str = ""  # how ``estimate`` was made (see estimate_size)
    upper_bound: bool = False  # ``estimate`` is at most that, ZFS could not say more

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
                 planned_snapshot=None, raw=None, compressed=False, props=False, replicate=False):
    """The Step that brings ``dest`` up to date for ``dataset``, or None if it already is.

    ``planned_snapshot``: a snapshot --dry-run would take first (it does not exist yet).
    ``raw``/``compressed``/``props``: --raw / --compressed-send / --props (see send_flags).
    ``replicate`` (--replicate): `zfs send -R`, the dataset and every dataset under it in one
    stream.  A replication chain is its own: it starts with a full, continues only from a snapshot
    (-R cannot start from a bookmark), only with --replicate (a single-dataset incremental on it
    would leave the tree behind), and only when every dataset of the tree has the snapshot (-R
    leaves out, without a word, a dataset that lacks it)."""
    now = now or time.time()
    snaps = zfs.snapshots(dataset)
    if planned_snapshot:
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
    older = [s for s in sources(zfs, dataset, archives)
             if (s.createtxg or 0, s.creation) < (target.createtxg or 0, target.creation)]
    base, reason = next_base(older, archives, dataset)
    full = None
    if base is not None:
        chain = chains.chain_to(archives, base.guid)
        full = chain.archives[0]
        if full_every and len(chain.archives) >= full_every:
            base, reason = None, f"the chain has {len(chain.archives)} archives (--full-every {full_every})"
        elif full_if_older and now - chain.archives[0].uploaded > full_if_older:
            base, reason = None, "the chain's full is older than --full-if-older-than"
    if base is not None and "-R" in full.meta.send_flags and not replicate:
        raise UsageError(f"{dataset}'s chain at {dest} is a replication stream (zfs send -R: {dataset} and every "
                         f"dataset under it): back it up with --replicate to continue it, or start a chain of "
                         f"single-dataset sends with --full-every 1")
    if base is not None and replicate and "-R" not in full.meta.send_flags:
        base, reason = None, "--replicate: a replication chain starts with a full (the chain there is of single sends)"
    elif base is not None and replicate and base.bookmark:
        base, reason = None, (f"@{base.short} is gone (only its bookmark is left) and zfs send -R starts only from "
                              f"a snapshot of every dataset: hold the bases of a replication chain (zg-backup does)")
    tree = replicated_tree(zfs, dataset, target) if replicate and not target.planned else None
    flags, enc, why = send_flags(zfs, dataset, full if base is not None else None, raw=raw, compressed=compressed,
                                 props=props, replicate=replicate)
    if base is not None and not flags.raw and enc is not None and enc.get("keystatus") != "available":
        # a chain of decrypted sends cannot go on while the key is unloaded; a raw full starts a new one
        flags, enc, why = send_flags(zfs, dataset, None, raw=True, props=props, replicate=replicate)
        base, reason = None, (f"{dataset}'s key is not loaded: a raw send (-w) starts a new chain (the chain at "
                              f"{dest} holds decrypted sends; `zfs load-key {enc.get('encryptionroot', dataset)}` "
                              f"would continue it)")
    elif base is not None and raw and not flags.raw:
        base, reason = None, "--raw: a raw chain starts with a full (the chain there holds decrypted sends)"
        flags, enc, why = send_flags(zfs, dataset, None, raw=True, props=props, replicate=replicate)
    if base is None and why:
        reason = f"{reason}; raw (-w): {why}" if reason else f"raw (-w): {why}"
    if base is not None and base.bookmark:
        reason += f" (kept as bookmark {base.bookmark})"
    size, how, upper = estimate_size(zfs, target, base, flags)
    return Step(dataset, target, base, reason, size, flags, enc, tree, how, upper)


def replicated_tree(zfs, dataset, target):
    """{dataset under ``dataset`` (relative, "" for itself): guid of its @snapshot} for a -R send
    of ``target``; zg-restore checks every one after receiving.  Refused when a dataset of the
    tree lacks the snapshot: zfs send -R would leave it out of the backup without a word."""
    tree, lacking = {}, []
    for ds in zfs.list_datasets(dataset, recursive=True):
        match = [s for s in zfs.snapshots(ds) if s.short == target.short]
        if match:
            tree[ds[len(dataset):].lstrip("/")] = str(match[0].guid)  # decimal strings, as SPEC's guids
        else:
            lacking.append(ds)
    if lacking:
        raise UsageError(f"--replicate: {', '.join(lacking[:3])}{' ...' if len(lacking) > 3 else ''} "
                         f"{'has' if len(lacking) == 1 else 'have'} no @{target.short}, and zfs send -R would leave "
                         f"{'it' if len(lacking) == 1 else 'them'} out: take the snapshot recursively "
                         f"(`zfs snapshot -r {target.name}`, or zg-backup --replicate --snapshot NAME)")
    return tree


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


def estimate_size(zfs, target, base, flags=SendFlags()):
    """(bytes, how, upper bound?) the send will roughly produce: ZFS's own estimate (`zfs send -nP`,
    which knows the flags and starts from a bookmark too) where ZFS has one; else `referenced` for
    a full and `written@base` for an incremental, summed over the tree for -R.  A snapshot
    --dry-run has not taken yet is estimated from its datasets as they are now.  Where ZFS says
    nothing of an incremental (zfs-fuse has neither -P nor `written`), the dataset's `referenced`
    is what it can be at most: an upper bound, said to be one, never "unknown"."""
    if not target.planned:
        size = zfs.send_size(target.name, base.source if base is not None else None, flags)
        if size is not None:
            return size, "zfs send -nP", False
    else:  # the properties of the dataset as it is now count synced txgs only
        try:
            zfs.sync(target.dataset.split("/", 1)[0])
        except ZgError:
            pass  # no `zpool sync` (zfs-fuse): what the last txg counted
    size = _properties_size(zfs, target, base, flags)
    if size is not None:
        return size, ("written" if base is not None else "referenced"), False
    if base is not None:
        size = _properties_size(zfs, target, None, flags)
        if size is not None:
            return size, "the dataset's referenced: ZFS gives no incremental size here", True
    return None, "", False


def _properties_size(zfs, target, base, flags):
    try:
        datasets = zfs.list_datasets(target.dataset) if flags.replicate else [target.dataset]
        total = 0
        for ds in datasets:
            name = ds if target.planned else f"{ds}@{target.short}"
            since = base.source[len(base.dataset):] if base is not None else None  # @snap, or #bookmark
            if since is not None and (ds == target.dataset or zfs.exists(ds + since)):
                total += int(zfs.get(name, f"written{since}")[f"written{since}"])
            else:  # a full, or a dataset of the tree newer than the base: sent whole
                total += int(zfs.get(name, "referenced")["referenced"])
        return total
    except (ZgError, ValueError, KeyError):
        return None


def run_step(zfs, store, cat, dest, step, recipients, *, algorithm, level, jobs, threads=-1,
             intermediates=False, sign=None, watch=NOBODY, journal=None, resume=None):
    """Send, encrypt, upload and record one Step; returns (ArchiveInfo, archive.Result, the
    upload's stats: parts and bytes sent and kept).
    ``watch`` sees the bytes of the send stream, against its estimate.

    With ``intermediates`` an incremental is `zfs send -I`: a compound stream whose header names no
    guids, so the archive's metadata carries the base's and the target's (the chain needs them).

    ``journal`` (a path): the archive is resumable (services.resume, SPEC section 11): its key
    and header are journaled there before anything is sent, and a run that is stopped or loses
    its store leaves the upload and the journal for the next run.  ``resume`` (a resume.Pending
    for this very step) continues such an archive; a part that differs from what may have been
    sent raises ResumeMismatchError, with the upload freed and the journal gone: the caller then
    makes the archive anew."""
    intermediates = intermediates and step.base is not None and not step.base.bookmark  # -I: never from a bookmark
    send = zfs.send(step.target.name, from_snap=step.base.source if step.base else None,
                    intermediates=intermediates, flags=step.flags)
    compound = intermediates or step.flags.compound  # -I, -p and -R streams: an outer DRR_BEGIN without guids
    checked = False
    watch.begin(f"{step.dataset}@{step.target.short} ({step.kind}{', resumed' if resume else ''})", step.estimate)
    try:
        src = PeekReader(Counted(send.stdout, watch))
        declared = (step.target.guid, step.base.guid if step.base else 0) if compound else None
        tree = {int(g) for g in step.tree.values()} if step.tree is not None else None
        if resume is not None:
            prep = archive.prepare_again(src, resume.file_key, resume.header, declared=declared, tree=tree)
        else:
            extra = {}
            if step.flags.raw and step.encryption:  # whose ZFS key opens it, when restored
                extra["encryption_root"] = step.encryption.get("encryptionroot") or step.dataset
            if step.tree is not None:  # every dataset of a -R stream, for zg-restore's guid checks
                extra["replicated"] = step.tree
            prep = archive.prepare(src, recipients, algorithm=algorithm, level=level, declared=declared,
                                   sign=sign, extra_metadata=extra, tree=tree)
        ident = prep.identity
        expected = ident is not None and (
            (ident.header_type == "compound" and ident.toname == step.target.name) if compound
            else ident.toguid == step.target.guid)
        if not expected:
            raise UsageError(f"zfs send of {step.target.name} did not produce the expected stream")
        metadata = store_fields(prep.header, declared=declared, send=" ".join(step.flags.cli()),
                                snap_created=step.target.creation if compound else None)
        if resume is not None:
            token, log = resume.token, resume.journal
        else:
            token = secrets.token_hex(8)
            log = journal and resumes.start(journal, dest, step.dataset, token, resumes.settings(
                step, algorithm=algorithm, level=level, intermediates=intermediates, recipients=recipients,
                sign=sign, chunk_size=prep.header.chunk_size), prep, metadata)
        up = store.open_continued(metadata, log, jobs=jobs) if log else store.open_upload(metadata, jobs=jobs)
        cat.upload_started(dest, token, metadata, command="zg-backup")  # stays listed if killed
        kept = False
        try:
            result = archive.write_archive(prep, up, threads=threads)
            checked = True
            send.check()  # a failed zfs send must never become a complete archive
            info = up.commit()
        except BaseException as err:
            if log and resumes.worth_keeping(err, log):
                up.keep()
                kept = True
                stored = up.stats["bytes_sent"] + up.stats["bytes_reused"]
                err.add_note(f"the {cost.human_bytes(stored)} of {step.dataset}@{step.target.short} "
                             f"stored so far are kept: the next zg-backup of {step.dataset} to {dest} continues "
                             f"the archive (`zg-rm --incomplete {dest}` frees them)")
            else:
                try:
                    up.abort()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
                if log:
                    log.discard()
            raise
        finally:  # completed, or aborted: no longer incomplete
            if not kept:
                cat.upload_ended(dest, token)
    except ResumeMismatchError:
        if resume is not None:  # also what the store holds of it under another upload id
            resumes.abandon(store, resume.journal)
            cat.upload_ended(dest, resume.token)
        raise
    finally:
        watch.end()
        if not checked:  # something failed first: stop zfs send, keep the first error
            send.kill()
            try:
                send.check()
            except ZgError:
                pass
    cat.record(dest, info, dataset=step.dataset, snapshot=step.target.short)
    if log:
        log.discard()
    chain_locks(store, cat, dest, info)
    return info, result, up.stats


def resumable(store, cat, dest, dataset, path, plan, settings_of, recipients):
    """The interrupted archive of ``dataset`` journaled at ``path``, if this run can continue it:
    (Step, resume.Pending, None).  Else (None, None, note), the note saying why one was given up
    (its journal removed, what the store holds of it freed), or None when there was none.

    ``plan(snapshot)`` is the Step this run would make of that snapshot (plan_dataset);
    ``settings_of(step)`` this run's resume.settings for it."""
    try:
        pending = resumes.load(path)
    except (ResumeMismatchError, OSError) as err:
        try:
            os.unlink(path)
        except OSError:
            pass
        return None, None, (f"{err}; the interrupted archive starts anew (what the store holds of it stays "
                            f"until `zg-rm --incomplete {dest}`)")
    if pending is None:
        return None, None, None
    target = pending.settings["target"]

    def give_up(why):
        warning = resumes.abandon(store, pending.journal)
        cat.upload_ended(dest, pending.token)
        return None, None, (f"the interrupted archive of {target} is not continued: {why}; it is made anew under "
                            f"a new key, what was sent of it is freed" + (f" ({warning})" if warning else ""))

    if (pending.dest, pending.dataset) != (dest, dataset):
        return give_up("its journal names another destination or dataset")
    toguid, fromguid = int(pending.settings["toguid"]), int(pending.settings["fromguid"])
    if any(a.toguid == toguid and (a.fromguid or 0) == fromguid for a in cat.archives(dest)):
        pending.journal.discard()  # completed and recorded; only the journal's removal was cut short
        cat.upload_ended(dest, pending.token)
        return None, None, None
    try:
        step = plan(pending.snapshot)
    except ZgError as err:
        return give_up(str(err))
    if step is None:
        return give_up(f"{target} is backed up already")
    why = pending.differs(settings_of(step))
    if why is None and not pending.key_opens(recipients):
        why = "a key given now does not open it"
    if why:
        return give_up(why)
    return step, pending, None


def chain_locks(store, cat, dest, info):
    """After ``info`` is recorded: extend_locks, a failure said as what it leaves undone."""
    try:
        extend_locks(store, cat, dest)
    except StoreError as err:
        raise StoreError(f"{err} (archive {info.id} is stored and recorded, but the archives it depends on are "
                         f"not all locked as long: the next zg-backup or zg-upload to {dest} extends them)",
                         code=err.code) from None


def keep_bases(zfs, cat, dataset, *, hold=None):
    """Keep, for each destination of the catalog, the snapshot of ``dataset`` that its next
    incremental starts from (next_base), and let every other one go: a new chain, zg-rm and
    zg-prune call this too, so an old tip is let go when no destination needs it any more.

    Where the pool has bookmarks (OpenZFS), the base is bookmarked (bookmark_name: one per
    destination) and that destination's older zg bookmarks are destroyed; the snapshot itself
    may then be destroyed (sanoid-style rotation) without breaking the chain.  It is held with
    the destination's tag when ``hold`` is True, or when ``hold`` is None (the default) and the
    pool has no bookmarks (zfs-fuse) or the tag holds a snapshot already (a --hold stays chosen
    for zg-rm and zg-prune, which pass None); otherwise that tag is released.  The single tag of older
    versions is released once the per-destination holds are in place.  A replication chain
    (--replicate) holds its base in every dataset of the tree, bookmarks or not (-R starts only
    from snapshots).  Returns warnings (never fails the caller: the archive is already recorded)."""
    warnings = []
    try:
        snaps = zfs.snapshots(dataset)
        refs = zfs.userrefs_all(dataset) if snaps else {}
        marks = has_bookmarks(zfs, dataset)
        bookmarks = zfs.bookmarks(dataset) if marks else []
    except (DatasetNotFoundError, ZfsMissingError):  # not on this host: nothing here to hold
        return warnings
    except ZgError as err:
        return [f"{dataset}: holds not updated: {err}"]
    guids = {s.guid for s in snaps} | {b.guid for b in bookmarks}  # before any is destroyed
    dests = sorted({a.dest for a in cat.archives() if a.dataset == dataset or a.toguid in guids})
    for dest in dests:
        archives = cat.archives(dest)
        if marks:  # listed again for each destination: the one before may have destroyed some
            bookmarks = zfs.bookmarks(dataset)
        base, _ = next_base(sources(zfs, dataset, archives, snaps, bookmarks) if marks else snaps, archives,
                            dataset)
        # a replication chain (-R) starts only from a snapshot of every dataset of the tree: those are
        # held, each (`zfs hold -r` and `release -r` are all or nothing: one child without the tag,
        # and none is released), and bookmarks would not do
        replicated = any("-R" in a.meta.send_flags for a in archives if a.dataset == dataset)
        tree = _tree(zfs, dataset) if replicated else [dataset]
        if marks and not replicated:
            warnings += _keep_bookmark(zfs, dest, dataset, base, bookmarks)
        tag = hold_tag(dest)
        holding = hold if hold is not None else (not marks or replicated or _holds_tag(zfs, snaps, refs, tag))
        for s in snaps:
            for name in [f"{d}@{s.short}" for d in tree]:
                try:
                    if holding and base is not None and s.name == base.name:
                        zfs.hold(tag, name, exist_ok=True)
                    elif refs.get(s.name):
                        zfs.release(tag, name, missing_ok=True)
                except DatasetNotFoundError:
                    pass  # a dataset of the tree made after this snapshot
                except ZgError as err:
                    warnings.append(f"{name}: hold {tag!r} not updated: {err}")
    if not warnings:  # the old tag goes only once every new hold is in place
        for s in snaps:
            if refs.get(s.name):
                try:
                    zfs.release(LEGACY_HOLD_TAG, s.name, missing_ok=True)
                except ZgError as err:
                    warnings.append(f"{s.name}: old hold {LEGACY_HOLD_TAG!r} not released: {err}")
    return warnings


def holds(zfs, cat, dest):
    """For each dataset with archives at ``dest``: its held snapshots, which one the next
    incremental to ``dest`` starts from, and whether that one is held for ``dest``."""
    out = []
    tag = hold_tag(dest)
    archives = cat.archives(dest)
    for ds in sorted({a.dataset for a in archives if a.dataset}):
        try:
            snaps, refs = zfs.snapshots(ds), zfs.userrefs_all(ds)
        except DatasetNotFoundError:
            out.append(dict(dataset=ds, state="not on this host"))
            continue
        base, reason = next_base(snaps, archives, ds)
        if base is None:
            out.append(dict(dataset=ds, state=f"no base for an incremental: {reason}"))
        for s in snaps:
            n, is_base = refs.get(s.name, 0), base is not None and s.name == base.name
            if n or is_base:
                tags = zfs.holds(s.name) if n else []
                held = n > 0 if tags is None else tag in tags
                out.append(dict(dataset=ds, snapshot=s.name, userrefs=n, tags=tags, base=is_base, held=held))
    return out


def _tree(zfs, dataset):
    try:
        return zfs.list_datasets(dataset, recursive=True)
    except ZgError:
        return [dataset]


def _holds_tag(zfs, snaps, refs, tag):
    """Whether ``tag`` holds any of ``snaps`` now (`zfs holds`: OpenZFS, where bookmarks exist)."""
    return any(tag in (zfs.holds(s.name) or []) for s in snaps if refs.get(s.name))


def _keep_bookmark(zfs, dest, dataset, base, bookmarks):
    """Bookmark ``base`` for ``dest`` and destroy the destination's other zg bookmarks.

    Each destination keeps its own bookmark of its base, even when the base is gone and lives on
    only in another destination's bookmark (sources() names the first bookmark with the guid):
    that one goes when the other destination moves on.  A bookmark is copied from a bookmark
    (OpenZFS 2.0+) when the snapshot is gone."""
    warnings, keep = [], None
    prefix = _bookmark_prefix(dest, dataset)
    if base is not None:
        own = [b.name for b in bookmarks if b.name.startswith(prefix) and b.guid == base.guid]
        keep = own[0] if own else bookmark_name(dest, base)
        if not own:
            try:
                zfs.bookmark(base.bookmark or base.name, keep)
            except ZgError as err:
                warnings.append(f"{base.bookmark or base.name}: bookmark {keep} not made: {err}")
                keep = None
    for b in bookmarks:
        if b.name.startswith(prefix) and b.name != keep and keep is not None:
            try:
                zfs.destroy_bookmark(b.name)
            except ZgError as err:
                warnings.append(f"{b.name}: old bookmark not destroyed: {err}")
    return warnings


def key_escrow_warning(step, warned):
    """A raw archive opens only with the dataset's own ZFS key, which zfsglacier never sees: the
    user must keep that key somewhere other than this host.  Once per encryption root (``warned``
    remembers), say where the key is now and what to keep."""
    if not step.flags.raw or not step.encryption:
        return None
    root = step.encryption.get("encryptionroot") or step.dataset
    if root in warned:
        return None
    warned.add(root)
    where = step.encryption.get("keylocation", "?")
    form = step.encryption.get("keyformat", "?")
    if where.startswith("file://"):
        held = f"its key file {where[7:]} on this host"
    elif where == "prompt":
        held = f"its {form} (typed at `zfs load-key`)"
    else:
        held = f"its key ({where})"
    return (f"{step.dataset} is backed up raw (zfs send -w): the archive is encrypted with {root}'s ZFS key too, "
            f"and a restore stays locked without {held}; keep a copy of that {form} key away from this host "
            f"(with your zfsglacier key), or the backup cannot be opened if the host is lost")


SAMPLE = 32 << 20  # bytes of a send stream compressed to estimate the archive's size


@dataclass
class Sample:
    """How well a step's data compresses: ``stored`` bytes of archive from ``read`` bytes of its send
    stream (or of the dataset's newest snapshot, ``source``, for a snapshot not taken yet)."""

    source: str
    read: int
    stored: int
    whole: bool  # the sample is the whole stream: the ratio is the stream's own

    @property
    def ratio(self):
        return self.stored / self.read if self.read else 1.0


def sample_compression(zfs, step, algorithm, level, limit=SAMPLE):
    """Compress up to ``limit`` bytes of the stream this step sends (a snapshot --dry-run has not
    taken yet: the dataset's newest snapshot, sent the same way from the same base where it can
    be) with the archive's codec; None when there is nothing to sample.  Reads ZFS, writes
    nothing."""
    target, base = step.target, step.base
    if target.planned:
        snaps = [s for s in zfs.snapshots(step.dataset) if not s.planned]
        if not snaps:  # a first backup: its files, as they are now, are all there is to go by
            return _sample_files(zfs, step.dataset, algorithm, level, limit)
        target = snaps[-1]
        if base is not None and (base.guid == target.guid or base.bookmark):
            base = None  # nothing newer than the base yet: the data as it is, in a full of it
    send = zfs.send(target.name, from_snap=base.source if base is not None else None, flags=step.flags)
    stored = _Counter()
    read, whole = 0, False
    try:
        packer = compression.writer(algorithm, level, stored)
        while read < limit:
            piece = send.stdout.read(min(1 << 20, limit - read))
            if not piece:
                whole = True
                break
            packer.write(piece)
            read += len(piece)
        packer.close()
    finally:
        send.kill()
        try:
            send.check()
        except ZgError:
            pass  # stopped early on purpose: its EPIPE is no failure
    return Sample(target.name, read, stored.n, whole)


def _sample_files(zfs, dataset, algorithm, level, limit, most_files=10_000):
    """Compress the start of each file of the mounted ``dataset`` (the first ``most_files`` in
    directory order, an equal share of ``limit`` each, at least 1 MiB); None when it is not
    mounted or has no data.  Reads files, never writes."""
    props = zfs.get(dataset, "mounted", "mountpoint")
    root = props.get("mountpoint", "")
    if props.get("mounted") != "yes" or not root.startswith("/"):
        return None
    paths = []
    for top, dirs, files in os.walk(root):
        dirs.sort()
        paths.extend(os.path.join(top, name) for name in sorted(files))
        if len(paths) >= most_files:
            break
    share = max(1 << 20, limit // max(len(paths), 1))
    stored, read, whole = _Counter(), 0, len(paths) < most_files
    packer = compression.writer(algorithm, level, stored)
    for path in paths[:most_files]:
        try:
            with open(path, "rb", buffering=0) as f:
                piece = f.read(min(share, limit - read))
                whole = whole and not f.read(1)
        except OSError:
            continue
        packer.write(piece)
        read += len(piece)
        if read >= limit:
            whole = False
            break
    packer.close()
    return Sample(f"the files of {dataset}", read, stored.n, whole) if read else None


class _Counter:
    def __init__(self):
        self.n = 0

    def write(self, data):
        self.n += len(data)
        return len(data)


def describe_step(step, dest_class, sample=None):
    """One plan line: what is sent, about how big it is and what it costs to keep a month."""
    flags = f", zfs send {' '.join(step.flags.cli())}" if step.flags.cli() else ""
    words = f"{step.dataset}@{step.target.short}: {step.kind} ({step.reason}){flags}"
    archived = archive_estimate(step, sample)
    if archived is None:
        return f"{words}, size not known (ZFS gives no estimate here)"
    bound = "at most " if step.upper_bound else "about "
    sent = f"{bound}{cost.human_bytes(step.estimate)} to send ({step.estimated_by})"
    if sample is not None:
        of = f"all of {sample.source}" if sample.whole else f"a {cost.human_bytes(sample.read)} sample of {sample.source}"
        sent += f", {bound}{cost.human_bytes(archived)} archived ({of} compressed to {sample.ratio:.0%})"
    monthly = cost.dollars(cost.monthly_storage(archived, dest_class))
    return f"{words}: {sent}; {bound}{monthly}/month in {dest_class}"


def archive_estimate(step, sample=None):
    """Bytes the archive will take: the send estimate, compressed as the sample was."""
    if step.estimate is None:
        return None
    return int(step.estimate * sample.ratio) if sample is not None else step.estimate


def extend_locks(store, cat, dest):
    """Extend the Object Lock of every archive at ``dest`` that a later, longer-locked archive
    depends on (retention.lock_shortfalls), through the store (which checks what the server then
    keeps); the catalog records each new date.  Returns the archives extended.  A store that
    locks nothing has nothing to do."""
    if not store.properties.locks:
        return []
    done = []
    rows = cat.archives(dest)
    versions = {r.id: r.version for r in rows}
    for archive_id, until in sorted(retention.lock_shortfalls(rows, time.time()).items()):
        info = store.retain(archive_id, until, versions.get(archive_id))
        cat.retained(dest, archive_id, info.locked_until, info.lock_mode)
        done.append(info)
    return done


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
    prune_catalog_copies(store, cat, dest)
    return info


def surplus_catalog_copies(cat, dest):
    """The catalog copies at ``dest`` older than the newest CATALOG_COPIES (listed locally: a
    vault listing would need an inventory job)."""
    olds = cat.copies(dest)
    return olds[:max(0, len(olds) - CATALOG_COPIES)]


def prune_catalog_copies(store, cat, dest):
    """Delete the surplus catalog copies; one the store keeps (Object Lock, or a credential that
    may not delete: zg-doctor's backup policy) stays for a later run or zg-prune.  Returns the
    ids deleted and the (id, why) of those kept."""
    deleted, kept = [], []
    for old in surplus_catalog_copies(cat, dest):
        try:
            store.delete(old)
        except NotFoundError:
            pass  # gone already: the catalog forgets it too
        except ZgError as err:
            kept.append((old, str(err)))
            continue
        cat.copy_deleted(dest, old)
        deleted.append(old)
    return deleted, kept
