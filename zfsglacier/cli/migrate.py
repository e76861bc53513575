"""zg-migrate: move archives from one destination to another without decrypting them; made for
leaving a legacy Glacier vault for an S3 Glacier class (see services/migrate.py for the checks)."""

import sys

from ..errors import NotFoundError, PartialFailureError, UsageError, ZgError
from ..services import backup, cost, migrate, thaw
from . import schema
from .common import parser, run
from .progress import Progress, add_progress_option
from .sizes import parse_dollars
from .storeargs import add_store_options, add_thaw_options, catalog, jobs, open_dest, thaw_policy

EXAMPLES = [
    ("zg-migrate glacier://old-vault s3://bucket/zfs --dry-run",
     "what the move costs (retrieval, requests, storage at both ends) and takes; nothing is done"),
    ("zg-migrate glacier://old-vault s3://bucket/zfs --no-wait",
     "ask for every retrieval job and exit 75; run it again when they are done (hours) to copy"),
    ("zg-migrate glacier://old-vault offsite --delete-source",
     "copy, verify each copy against the SHA-256 recorded at upload, then delete it from the vault"),
]


def build_parser():
    p = parser("zg-migrate", "Move the archives the catalog records at SRC to DST without decrypting them: thaw "
                             "each at SRC, read it back verified, upload it to DST with its metadata, check the "
                             "copy's SHA-256 against the one recorded at upload, record it; with --delete-source, "
                             "only then delete it at SRC. Run it again to go on: copies are recognised.",
               examples=EXAMPLES)
    p.add_argument("src", metavar="SRC", help="where the archives are (glacier://vault, or any destination)")
    add_store_options(p)
    p.add_argument("--storage-class", help="S3 storage class at DST (default: its own, else DEEP_ARCHIVE)")
    add_thaw_options(p)
    p.set_defaults(tier="Bulk")
    p.add_argument("--delete-source", action="store_true",
                   help="delete each archive at SRC once its copy at DST is verified and recorded")
    p.add_argument("--max-cost", type=parse_dollars, metavar="DOLLARS",
                   help="refuse when the estimate (retrieval and requests) is more than this")
    p.add_argument("-n", "--dry-run", action="store_true", help="say what would move and what it costs; do nothing")
    schema.add_plan_option(p, "migrate-plan")
    add_progress_option(p)
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    schema.check_plan_option(args)
    config, dst_store, dst = open_dest(args, storage_class=args.storage_class)
    src_args = _with_dest(args, args.src)
    _, src_store, src = open_dest(src_args)
    if src == dst:
        raise UsageError(f"SRC and DST are the same destination ({src})")
    with catalog(args, config, create=False) as cat:
        pl = migrate.plan(cat, src, dst)
        if not pl.todo and not pl.done and not pl.unverifiable:
            raise NotFoundError(f"the catalog records no archives at {src} (`zg-catalog rebuild {args.src} --key KEY` "
                                f"reads them from the vault: an inventory job, hours at AWS)")
        est = migrate.estimate(pl.todo, src_store.price_class(), dst_store.price_class(), args.tier)
        dollars = est["retrieval_dollars"] + est["put_dollars"]
        if args.dry_run:
            return _plan(args, src, dst, pl, est)
        print(_words(src, dst, pl, est))
        sys.stdout.flush()
        if args.max_cost is not None and dollars > args.max_cost:
            raise UsageError(f"the move costs about {cost.dollars(dollars)}, more than --max-cost "
                             f"{cost.dollars(args.max_cost)} (--dry-run shows the estimate)")
        for row in pl.unverifiable:
            sys.stderr.write(f"zg-migrate: warning: {row.id} ({row.name}) has no SHA-256 in the catalog, so a copy "
                             f"could not be proven the same: left at {src}\n")
        for row, copied in pl.done:
            if args.delete_source:
                _delete(src_store, cat, src, row, copied)
        if not pl.todo:
            print(f"nothing left to copy: {len(pl.done)} archive(s) already at {dst}")
            return 0
        progress = Progress("migrate", mode=args.progress)
        thaw.thaw_all(src_store, src, cat, [r.id for r in pl.todo], thaw_policy(args), progress.say)
        failed = 0
        for row in pl.todo:
            try:
                info = migrate.copy(src_store, dst_store, row, jobs=jobs(args, config), watch=progress)
            except ZgError as err:
                failed += 1
                sys.stderr.write(f"zg-migrate: error: {row.id} ({row.name}): {err}\n")
                continue
            cat.record(dst, info, dataset=row.dataset, snapshot=row.snapshot, identity=None,
                       source=row.identity or "upload")
            backup.chain_locks(dst_store, cat, dst, info)
            cat.thaw_done(src, row.id)
            print(f"copied  {row.id} -> {info.id}  {row.name}  {cost.human_bytes(row.size)}")
            sys.stdout.flush()
            if args.delete_source:
                _delete(src_store, cat, src, row, cat.get(dst, info.id))
    if failed:
        raise PartialFailureError(f"{failed} of {len(pl.todo)} archives could not be copied (see above); the others "
                                  f"are at {dst}; run zg-migrate again for the rest")
    print(f"{len(pl.todo)} archive(s) copied to {dst}" + (f", and deleted at {src}" if args.delete_source else
                                                           f"; {src} still holds them (--delete-source)"))
    return 0


def _with_dest(args, dest):
    import argparse
    other = argparse.Namespace(**vars(args))
    other.dest, other.host = dest, None
    return other


def _delete(src_store, cat, src, row, copied):
    """Delete the source only for a copy recorded with the same SHA-256 and size."""
    if copied is None or copied.sha256 != row.sha256 or copied.size != row.size:
        raise UsageError(f"{row.id}: no verified copy is recorded: not deleted")
    try:
        src_store.delete(row.id)
    except NotFoundError:
        pass  # already gone there
    cat.mark_deleted(src, row.id)
    print(f"deleted {row.id} at {src} (its copy is {copied.id})")


def _words(src, dst, pl, est):
    return (f"{src} -> {dst}: {est['archives']} archive(s), {cost.human_bytes(est['bytes'])} to copy"
            + (f" ({len(pl.done)} copied before)" if pl.done else "") +
            f"; retrieval at {est['tier']} about {cost.dollars(est['retrieval_dollars'])} and ~{est['hours']:g} h, "
            f"uploads about {cost.dollars(est['put_dollars'])}; storage {cost.dollars(est['monthly_source_dollars'])}"
            f"/month there, {cost.dollars(est['monthly_target_dollars'])}/month here ({cost.as_of()})")


def _plan(args, src, dst, pl, est):
    if args.json:
        schema.dump("migrate-plan", source=src, destination=dst, prices_as_of=cost.as_of(),
                    archives=[dict(id=r.id, name=r.name, size=r.size, storage_class=r.storage_class) for r in pl.todo],
                    copied=[dict(source=a.id, copy=b.id) for a, b in pl.done],
                    unverifiable=[r.id for r in pl.unverifiable], **{k: v for k, v in est.items() if k != "archives"})
        return 0
    for r in pl.todo:
        print(f"would copy {r.id}  {r.name}  {cost.human_bytes(r.size)}")
    print(_words(src, dst, pl, est))
    return 0


def main(argv=None):
    return run("zg-migrate", body, argv, report=True)
