"""zg-prune: delete the archives a retention policy no longer needs (see zfsglacier.retention).

The plan goes to stdout (a report: what goes, what stays and why, what waits for its minimum
storage duration, the monthly saving); each failure is one line on stderr.  A dry run prints
the very lines a real run would, in the same order.
"""

import sys
import time

from ..services import backup, cost, retention
from ..errors import NotFoundError, PartialFailureError, RetainedError, StoreError, UsageError, ZgError
from . import schema
from . import jobs as jobs_config
from .common import parser, run
from .jobs import add_job_option
from .storeargs import add_store_options, catalog, open_dest
from ..zfs import open_zfs

PROG = "zg-prune"


def _age(ts, now):
    secs = max(0.0, now - ts)
    return f"{secs / 86400:.0f}d" if secs >= 86400 else f"{secs / 3600:.0f}h"


def _day(ts):
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _line(d, now, extra=""):
    a = d.archive
    why = "; ".join(d.reasons)
    return (f"  {a.id}  {a.name}  {cost.human_bytes(a.size)}  {_age(retention.row_time(a), now)}  "
            f"{why}{extra}\n")


def _early_note(d):
    if d.early_cost <= 0 and d.days_short <= 0:
        return ""
    return (f"; {d.cls} bills at least {cost.min_days(d.cls)} days ({d.days_short:.0f} short): deleting now "
            f"still costs {cost.dollars(d.early_cost)}")


def _warn(message):
    sys.stderr.write(f"{PROG}: warning: {message}\n")


def _error(message):
    sys.stderr.write(f"{PROG}: error: {message}\n")


EXAMPLES = [
    ('zg-prune offsite --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run',
     'what would go and what each deletion costs; nothing is deleted'),
    ('zg-prune offsite tank/db --keep-last 3',
     'keep the 3 newest snapshots of tank/db and every archive they need'),
]


def build_parser():
    p = parser(PROG, "Delete the archives at DEST that no keep rule needs. Rules pick snapshots per dataset "
                     "(UTC calendar periods, ISO weeks, the newest snapshot of each of the N most recent periods "
                     "that have one); every archive a kept snapshot's chain needs stays; archives younger than "
                     "their storage class's minimum duration wait unless --delete-early.", examples=EXAMPLES)
    add_store_options(p, dest_optional=True)
    p.add_argument("dataset", nargs="?", metavar="DATASET", help="only this dataset (and its children)")
    add_job_option(p, "prune, by its keep_* rules, the datasets")
    p.add_argument("--keep-last", type=int, default=0, metavar="N", help="keep the N newest snapshots")
    for name, period in (("hourly", "hours"), ("daily", "days"), ("weekly", "ISO weeks"), ("monthly", "months"),
                         ("yearly", "years")):
        p.add_argument(f"--keep-{name}", type=int, default=0, metavar="N",
                       help=f"keep the newest snapshot of each of the N most recent {period} that have one")
    p.add_argument("--dry-run", "-n", action="store_true", help="print the plan, delete nothing")
    schema.add_plan_option(p, "prune-plan")
    p.add_argument("--delete-early", action="store_true",
                   help="also delete archives younger than their class's minimum storage duration "
                        "(billed to the minimum anyway)")
    return p


def body(argv):
    p, args, job = jobs_config.parse(build_parser, argv)
    if job is None:
        if not args.dest:
            raise UsageError("give DEST, or --job NAME (see zg-prune --help)")
        return prune(args)
    if args.dest and args.dest != job.destination and not args.dataset:  # `zg-prune --job NAME DATASET`
        args.dest, args.dataset = None, args.dest
    jobs_config.apply(args, job, p, {f"keep_{k}": f"keep_{k}" for k in jobs_config.KEEP})
    chosen = [args.dataset] if args.dataset else job.datasets
    if args.dataset and args.dataset not in job.datasets:
        raise UsageError(f"{args.dataset} is not one of job {job.name}'s datasets ({', '.join(job.datasets)})")
    if args.json and len(chosen) > 1:
        raise UsageError(f"--json: one plan at a time; give one of job {job.name}'s datasets "
                         f"({', '.join(job.datasets)})")
    failed = []
    for ds in chosen:
        args.dataset = ds
        try:
            prune(args)
        except NotFoundError as err:  # not backed up yet: nothing of it to prune
            _warn(f"job {job.name}: {err}")
        except ZgError as err:
            if len(chosen) == 1:
                raise
            failed.append(ds)
            _error(f"job {job.name}: {ds}: {err}")
    if failed:
        raise PartialFailureError(f"job {job.name}: pruning {len(failed)} of {len(chosen)} datasets failed "
                                  f"({', '.join(failed)}: see above)")
    return 0


def prune(args):
    schema.check_plan_option(args)
    rules = retention.Rules(**{n: getattr(args, f"keep_{n}") for n in retention.RULE_NAMES})
    rules.require()
    now = time.time()

    config, store, dest = open_dest(args)
    with catalog(args, config, create=False) as cat:
        archives = cat.archives(dest)
        if args.dataset and not any(a.dataset == args.dataset or (a.dataset or "").startswith(args.dataset + "/")
                                    for a in archives):
            raise NotFoundError(f"no archives of dataset {args.dataset} at {dest} in the catalog")
        pl = retention.plan(archives, rules, now,
                            storage_class=lambda a: store.price_class(a.storage_class),
                            delete_early=args.delete_early, dataset=args.dataset)
        for w in pl.warnings:
            _warn(w)
        if args.json:
            _json_plan(pl, args, dest, rules, now)
            return 0
        failures = _report_and_delete(pl, args, store, cat, dest, rules, now)
        if not args.dry_run:
            zfs = open_zfs()
            for ds in sorted({d.archive.dataset for d in pl.delete if d.archive.dataset}):
                for w in backup.keep_bases(zfs, cat, ds):
                    _warn(w)
    if failures:
        raise StoreError(f"{failures} of {len(pl.delete)} deletions failed (listed above); the catalog still "
                         f"lists them: run zg-prune again")
    return 0


def _report_and_delete(pl, args, store, cat, dest, rules, now):
    """Print the plan; unless a dry run, delete as it goes.  Returns the number of failures."""
    out = sys.stdout.write
    n_scope = len(pl.keep) + len(pl.delete) + len(pl.deferred) + len(pl.locked)
    scope = f" ({args.dataset})" if args.dataset else ""
    clock = time.strftime("%Y-%m-%d %H:%M", time.gmtime(now))
    out(f"{dest}{scope}: {n_scope} archives; rules: {rules.describe()}; now {clock} UTC\n")
    total = sum(d.archive.size for d in pl.delete)
    verb = "would delete" if args.dry_run else "deleting"
    out(f"{verb} {len(pl.delete)} archives, {cost.human_bytes(total)}:\n")
    failures, done = 0, []
    for d in pl.execution_order():
        line = _line(d, now, _early_note(d))
        if args.dry_run:
            out(line)
            continue
        try:
            store.delete(d.id)
        except NotFoundError:
            _warn(f"{d.id} was already gone from {dest}; marked deleted in the catalog")
        except RetainedError as err:  # locked by the server (a bucket default the catalog did not know)
            _warn(f"kept {d.id} ({d.archive.name}): {err}")
            continue
        except ZgError as err:
            _error(f"could not delete {d.id} ({d.archive.name}): {err}")
            failures += 1
            continue
        except OSError as err:
            _error(f"could not delete {d.id} ({d.archive.name}): {err.strerror or err}")
            failures += 1
            continue
        cat.mark_deleted(dest, d.id, when=now)
        done.append(d)
        out(line)
        sys.stdout.flush()
    if pl.deferred:
        out(f"deferred {len(pl.deferred)} archives (younger than their minimum storage duration; "
            f"--delete-early deletes them anyway):\n")
        for d in pl.deferred:
            out(_line(d, now, f"; deferred until {_day(d.until)} (deleting now would still cost "
                              f"{cost.dollars(d.early_cost)})"))
    if pl.locked:
        out(f"locked {len(pl.locked)} archives (Object Lock: the server refuses to delete them before the date; "
            f"a later zg-prune deletes them):\n")
        for d in pl.locked:
            out(_line(d, now, f"; locked until {_day(d.until)} ({d.archive.lock_mode or 'Object Lock'})"))
    _catalog_copies(args, store, cat, dest, out)
    out(f"keeping {len(pl.keep)} archives:\n")
    for d in pl.keep:
        out(_line(d, now))
    went = pl.delete if args.dry_run else done
    summary = f"{'would save' if args.dry_run else 'saves'} about {cost.dollars(sum(d.monthly for d in went))}/month"
    early = sum(d.early_cost for d in went)
    if early > 0:
        summary += f", after {cost.dollars(early)} still billed for early deletion"
    if pl.deferred:
        summary += f"; {cost.dollars(pl.deferred_saving)}/month more once the deferred ones can go"
    out(f"{summary} ({cost.as_of()})\n")
    return failures


def _json_plan(pl, args, dest, rules, now):
    def row(d, **more):
        a = d.archive
        return dict(id=a.id, name=a.name, size=a.size, storage_class=a.storage_class, **more)
    schema.dump("prune-plan", destination=dest, dataset=args.dataset, rules=rules.describe(), now=now,
                prices_as_of=cost.as_of(),
                delete=[row(d, why="; ".join(d.reasons), early_deletion_dollars=d.early_cost)
                        for d in pl.execution_order()],
                deferred=[row(d, until=d.until, early_deletion_dollars=d.early_cost) for d in pl.deferred],
                locked=[row(d, until=d.until) for d in pl.locked],
                keep=[row(d, why="; ".join(d.reasons)) for d in pl.keep],
                monthly_saving_dollars=pl.monthly_saving, early_deletion_dollars=pl.early_cost)


def _catalog_copies(args, store, cat, dest, out):
    """Old catalog copies go too (all but the newest few): zg-backup cannot delete them under the
    backup policy, so this is where they go.  One that stays (a lock) is a warning, not a failure."""
    surplus = backup.surplus_catalog_copies(cat, dest)
    if not surplus:
        return
    if args.dry_run:
        out(f"would delete {len(surplus)} old catalog copies (the newest {backup.CATALOG_COPIES} stay)\n")
        return
    gone, kept = backup.prune_catalog_copies(store, cat, dest)
    out(f"deleted {len(gone)} old catalog copies (the newest {backup.CATALOG_COPIES} stay)\n")
    if kept:
        _warn(f"kept {len(kept)} old catalog copies a later zg-prune deletes: {kept[0][1]}")


def main(argv=None):
    return run(PROG, body, argv, hooks=True)
