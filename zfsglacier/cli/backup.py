"""zg-backup: snapshot if asked, then full or incremental, encrypt, upload, record: one command."""

import os
import sys
import time

from ..services import backup, cost, resume
from ..format import archive, compression
from ..catalog.db import catalog_path
from .. import stores
from ..errors import CatalogError, PartialFailureError, ResumeMismatchError, UsageError, ZgError
from ..zfs import open_zfs
from .progress import Progress, add_progress_option
from . import schema
from . import jobs as jobs_config
from .common import parser, run
from .jobs import add_job_option
from .keyargs import add_key_options, add_sign_option, default_keys, recipients as key_recipients, signing_key
from .sizes import parse_age
from .storeargs import add_store_options, catalog, catalog_copy_store, host_defaulted, jobs, open_dest
from ..catalog.locks import UPLOADS, Locks, lock_directory


EXAMPLES = [
    ('zg-backup tank/db offsite --key ~/.zg/offsite.pub --snapshot auto',
     'snapshot now, then a full (first time) or an incremental'),
    ('zg-backup -r tank offsite --key ~/.zg/offsite.pub --snapshot auto --full-if-older-than 30d',
     'every dataset under tank, a new chain each month'),
    ('zg-backup tank/db offsite --key ~/.zg/offsite.pub --dry-run',
     'the plan, its size and monthly cost; nothing changes'),
]


def build_parser():
    p = parser("zg-backup", "Back DATASET up to DEST: full or incremental from the newest snapshot already "
                            "there, encrypted to --key, uploaded and recorded in the catalog.", examples=EXAMPLES,
               notes="A run that is killed, stopped (Ctrl-C, SIGTERM) or loses its store part way keeps what it "
                     "stored: the next zg-backup of the dataset to DEST continues that archive, sending only what "
                     "the store lacks, when the snapshot, flags and keys are the same (else it starts anew under a "
                     "new key and says why). zg-ls shows it as resumable; zg-rm --incomplete gives it up.")
    p.add_argument("dataset", metavar="DATASET", nargs="?",
                   help="the dataset to back up (with -r, and every one under it); not with --job")
    add_store_options(p, dest_optional=True)
    add_job_option(p, "back up the datasets")
    add_key_options(p, "recipient")
    p.add_argument("-r", "--recursive", action="store_true", help="every dataset under DATASET")
    p.add_argument("--snapshot", metavar="NAME|auto", help="take this snapshot first (auto: zg-<UTC time>)")
    p.add_argument("--full-every", type=int, metavar="N", help="start a new chain when it has N archives")
    p.add_argument("--full-if-older-than", type=parse_age, metavar="AGE",
                   help="start a new chain when its full is older than AGE (e.g. 30d, 12w)")
    p.add_argument("-I", "--intermediates", action="store_true",
                   help="incrementals include every snapshot in between (zfs send -I), so they are restorable too")
    p.add_argument("--hold", dest="hold", action="store_true", default=None,
                   help="`zfs hold` the last archived snapshot (the next incremental's base) even where the pool "
                        "has bookmarks (default: hold only where it has none, as on zfs-fuse; with bookmarks the "
                        "base is bookmarked and may be destroyed)")
    p.add_argument("--no-hold", dest="hold", action="store_false",
                   help="do not hold it (and release this destination's holds); bookmarks are still made")
    p.add_argument("--raw", action="store_true", default=None,
                   help="zfs send -w: an encrypted dataset's blocks as stored, still under its ZFS key (automatic "
                        "when the key is not loaded); the restore stays locked until `zfs load-key`")
    p.add_argument("--props", action="store_true",
                   help="zfs send -p: the dataset's properties travel with it (a new chain's full decides; "
                        "zg-restore takes all but mountpoint)")
    p.add_argument("--replicate", action="store_true",
                   help="zfs send -R: DATASET and every dataset under it, with their properties, in one archive per "
                        "run (clones stay clones); --snapshot is taken recursively; the chain's bases are held in "
                        "every dataset; zg-restore brings the whole tree back (not with -r)")
    p.add_argument("--compressed-send", action="store_true",
                   help="zfs send -c: blocks as ZFS compressed them (less CPU here, a worse zstd ratio)")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the plan (snapshots, full/incremental, size, "
                                                          "monthly cost) and change nothing")
    schema.add_plan_option(p, "backup-plan")
    p.add_argument("--storage-class", help="S3 storage class (default: the destination's, else DEEP_ARCHIVE)")
    p.add_argument("-c", "--compression", default=compression.DEFAULT, choices=compression.ALGORITHMS,
                   help=f"compression inside the archive (default {compression.DEFAULT}), as zg-encrypt -c")
    p.add_argument("-l", "--level", type=int, help="compression level, as zg-encrypt -l (zstd: 3 by default, 9 and up: "
                                                     "long-distance matching)")
    add_sign_option(p)
    p.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run of the same dataset and destination (default: fail at once)")
    add_progress_option(p)
    return p


def body(argv):
    p, args, job = jobs_config.parse(build_parser, argv)
    if job is None:
        if not args.dataset or not args.dest:
            raise UsageError("give DATASET and DEST, or --job NAME (see zg-backup --help)")
        args.existing = None
        return backup_datasets(args)
    if args.dataset:
        raise UsageError(f"--job {job.name} names its datasets ({', '.join(job.datasets)}): give no DATASET")
    jobs_config.apply(args, job, p, jobs_config.BACKUP_SETTINGS)
    default_keys(args, job.keys)
    args.existing = job.get("existing")
    if args.snapshot is None:
        args.snapshot = jobs_config.snapshot_name(job)
    failed, plans = [], []
    for ds in job.datasets:
        args.dataset = ds
        try:
            backup_datasets(args, plans)
        except ZgError as err:
            if len(job.datasets) == 1:
                raise
            failed.append(ds)
            sys.stderr.write(f"zg-backup: error: job {job.name}: {ds}: {err}\n")
    if plans:  # one plan for the whole job
        _show_plan(args, plans[0][0], plans[0][1], [s for p in plans for s in p[2]], [d for p in plans for d in p[3]])
    if failed:
        raise PartialFailureError(f"job {job.name}: {len(failed)} of {len(job.datasets)} datasets failed "
                                  f"({', '.join(failed)}: see above)")
    return 0


def backup_datasets(args, plans=None):
    """One DATASET (and, with -r, those under it) to DEST, as the arguments say; a dry run's plan
    is shown, or added to ``plans`` for the caller to show."""
    if args.replicate and args.recursive:
        raise UsageError("--replicate sends every dataset under DATASET in one stream already: drop -r (which makes "
                         "one chain per dataset instead)")
    if args.json and not args.dry_run:
        raise UsageError("--json goes with --dry-run (the plan); a backup's own output is its archive lines")
    recips = key_recipients(args)
    level = compression.check(args.compression, args.level)
    config, store, dest = open_dest(args, storage_class=args.storage_class)
    sign = signing_key(args, config)
    zfs = open_zfs()
    n_jobs = jobs(args, config)
    dest_class = store.price_class()
    datasets = zfs.list_datasets(args.dataset, recursive=args.recursive)  # (with --replicate, one)
    store.check_ready()  # an unmounted disk: refused before any snapshot is taken
    path = catalog_path(args.catalog, config)
    if not os.path.exists(path):
        if host_defaulted(args, config):
            _refuse_flat_layout(args, config, store, path)
        warning = backup.check_first_backup(store, path, dest)
        if warning:
            sys.stderr.write(f"zg-backup: warning: {warning}\n")
    failures = []
    with catalog(args, config, write=not args.dry_run) as cat, \
            Locks(lock_directory(cat.path), wait=args.lock_wait) as locks:
        if not args.dry_run:  # before any snapshot is taken: a refused run changes nothing
            for ds in sorted(datasets):
                locks.take(dest, ds, f"zg-backup {ds}")
            locks.take(dest, UPLOADS, "zg-backup", shared=True)
        snap_name = args.snapshot if not args.existing else None  # a job that uses others' snapshots takes none
        if snap_name and not args.dry_run:
            snap_name = backup.take_snapshot(zfs, args.dataset, snap_name, recursive=args.recursive or args.replicate)
        elif snap_name == "auto":
            snap_name = backup.auto_snapshot_name()
        made, warned, planned, current = 0, set(), [], []
        progress = Progress("backup", mode=args.progress)

        def plan(ds, take, planned_snapshot=None):
            return backup.plan_dataset(
                zfs, cat, dest, ds, snapshot_name=take, planned_snapshot=planned_snapshot,
                full_every=args.full_every, full_if_older=args.full_if_older_than, raw=args.raw,
                compressed=args.compressed_send, props=args.props, replicate=args.replicate)

        def settings_of(step):
            return resume.settings(step, algorithm=args.compression, level=level, intermediates=args.intermediates,
                                   recipients=recips, sign=sign, chunk_size=archive.DEFAULT_CHUNK_SIZE)

        def make(step, journal, pending=None):
            escrow = backup.key_escrow_warning(step, warned)
            if escrow:
                sys.stderr.write(f"zg-backup: warning: {escrow}\n")
            start = time.monotonic()
            info, result, sent = backup.run_step(
                zfs, store, cat, dest, step, recips, algorithm=args.compression, level=level, jobs=n_jobs,
                intermediates=args.intermediates, sign=sign, watch=progress, journal=journal, resume=pending)
            secs = time.monotonic() - start
            for w in backup.keep_bases(zfs, cat, step.dataset, hold=args.hold):
                sys.stderr.write(f"zg-backup: warning: {w}\n")
            kept = f", resumed: {cost.human_bytes(sent['bytes_reused'])} were stored already" if pending else ""
            print(f"{info.id}  {step.dataset}@{step.target.short}  {step.kind}"
                  f"{' from ' + step.base.short if step.base else ''}  {cost.human_bytes(info.size)} "
                  f"({cost.human_bytes(result.plaintext_length)} sent, {secs:.1f} s{kept})")
            sys.stdout.flush()

        for ds in datasets:
            try:
                journal = resume.journal_path(cat.path, dest, ds)
                if args.dry_run:
                    pending = resume.peek(journal)
                    if pending is not None and not args.json:
                        print(f"plan: {ds}: first, continue the interrupted archive of {pending.settings['target']} "
                              f"({cost.human_bytes(pending.journal.recorded_bytes)} sent already), if this run's "
                              f"flags and keys are those it was begun with")
                else:
                    step, pending, note = backup.resumable(store, cat, dest, ds, journal, lambda snap: plan(ds, snap),
                                                           settings_of, recips)
                    if note:
                        sys.stderr.write(f"zg-backup: note: {ds}: {note}\n")
                    if pending is not None:
                        try:
                            make(step, journal, pending)
                        except ResumeMismatchError as err:
                            sys.stderr.write(f"zg-backup: note: {ds}: the interrupted archive of "
                                             f"{step.target.name} could not be continued ({err}); it is made anew "
                                             f"under a new key\n")
                            make(step, journal)
                        made += 1
                if args.existing:
                    take, planned_snapshot = jobs_config.newest_matching(zfs, ds, args.existing), None
                else:
                    take, planned_snapshot = (snap_name, None) if not args.dry_run else (None, snap_name)
                step = plan(ds, take, planned_snapshot)
                if step is None:
                    current.append(ds)
                    if not args.json:
                        print(f"{ds}: up to date at {dest}")
                    continue
                if args.dry_run:
                    sample = _sample(zfs, step, args.compression, level)
                    planned.append((step, sample))
                    if not args.json:
                        print("plan: " + backup.describe_step(step, dest_class, sample))
                    continue
                make(step, journal)
                made += 1
            except ZgError as err:
                if len(datasets) == 1:
                    raise
                failures.append(ds)
                sys.stderr.write(f"zg-backup: error: {ds}: {err}\n")
        if args.dry_run and plans is not None:
            plans.append((dest, dest_class, planned, current))
        elif args.dry_run:
            _show_plan(args, dest, dest_class, planned, current)
        if (made or cat.copy_stale(dest)) and not args.dry_run:  # a copy that failed last time is due too
            try:
                backup.upload_catalog(catalog_copy_store(args, config, store), cat, dest, recips, jobs=n_jobs,
                                      sign=sign)
            except ZgError as err:  # the backups themselves are complete and recorded
                sys.stderr.write(f"zg-backup: warning: the backup is complete and recorded, but the encrypted "
                                 f"copy of the catalog could not be uploaded ({err}); the next zg-backup "
                                 f"tries again, or run `zg-catalog backup {dest} --key PUB`\n")
    if failures:
        rest = len(datasets) - len(failures)
        raise PartialFailureError(f"{len(failures)} of {len(datasets)} datasets failed ({', '.join(failures)}: "
                                  f"see above)" + (f"; the other {rest} are backed up" if rest else ""))
    return 0


def _sample(zfs, step, algorithm, level):
    """How this step's data compresses (a sample of its send stream), or None where none can be
    read: the plan then shows the send's size, which the archive is at most."""
    try:
        return backup.sample_compression(zfs, step, algorithm, level)
    except ZgError as err:
        sys.stderr.write(f"zg-backup: note: {step.dataset}: no compression sample ({err}); the archive is at "
                         f"most the size to send\n")
        return None


def _show_plan(args, dest, dest_class, planned, current):
    if not args.json:
        print(f"plan: {len(planned)} archive(s) to make, {len(current)} dataset(s) up to date; "
              f"{cost.as_of()}")
        return
    steps = []
    for step, sample in planned:
        archived = backup.archive_estimate(step, sample)
        steps.append(dict(
            dataset=step.dataset, snapshot=step.target.short, kind=step.kind,
            base=step.base.short if step.base is not None else None, reason=step.reason,
            send_flags=step.flags.cli(), send_bytes=step.estimate, estimated_by=step.estimated_by,
            upper_bound=step.upper_bound, archive_bytes=archived,
            monthly_dollars=cost.monthly_storage(archived, dest_class) if archived is not None else None,
            **({"sample": vars(sample)} if sample is not None else {})))
    schema.dump("backup-plan", destination=dest, storage_class=dest_class, prices_as_of=cost.as_of(),
                steps=steps, up_to_date=current)


def _refuse_flat_layout(args, config, store, path):
    """No catalog, a per-host prefix chosen by default, and archives right under the destination's
    prefix: most likely this host's, from before per-host prefixes, with its catalog lost.  A backup
    to the host prefix would start every chain again with a full beside them: refused."""
    base = stores.open_store(args.dest, config=config, host="")
    if next(iter(base.list()), None) is not None:
        raise CatalogError(f"no catalog at {path}, and {base.url} holds archives right under its prefix (the "
                           f"layout before per-host prefixes): if they are this host's, set host = \"\" for "
                           f"destination {args.dest} and run `zg-catalog rebuild {args.dest} --key KEY`; to start "
                           f"this host's own prefix {store.url} beside them, set host = \"auto\"")


def main(argv=None):
    return run("zg-backup", body, argv, hooks=True)
