"""zg-rm: delete an archive, saying what an early deletion still costs."""

import os
import sys
import time

from ..services import backup, cost, resume
from ..catalog import chains
from .. import stores
from ..errors import NotFoundError, UsageError
from ..zfs import open_zfs
from . import schema
from .common import parser, run
from .sizes import parse_age
from .storeargs import add_store_options, catalog, open_dest
from ..catalog.locks import UPLOADS, Locks, lock_directory
from ..format.metadata import printable


EXAMPLES = [
    ('zg-rm offsite 20261127T163200Z-1a2b3c4d',
     'delete one archive; refuses to cut a chain'),
    ('zg-rm --dry-run offsite 20261127T163200Z-1a2b3c4d',
     'what the deletion would remove and still cost (minimum storage durations); nothing is deleted'),
    ('zg-rm --incomplete offsite --older-than 2d --yes',
     'abort uploads a killed run left behind (billed until then), without asking'),
]


def build_parser():
    p = parser("zg-rm", "Delete archive ID at DEST (and mark it deleted in the catalog); with --incomplete, "
                        "abort the uploads a killed run left in DEST (S3 and vault multipart uploads, .partial files).", examples=EXAMPLES)
    add_store_options(p)
    p.add_argument("id", metavar="ID", nargs="?", help="the archive to delete, as zg-ls shows it (not with --incomplete)")
    p.add_argument("--incomplete", action="store_true", help="abort incomplete uploads instead of deleting an archive")
    p.add_argument("--older-than", type=parse_age, default=0.0, metavar="AGE",
                   help="with --incomplete: only those started longer ago than AGE (e.g. 1d: uploads from other "
                        "hosts sharing DEST may still be running)")
    p.add_argument("--force", action="store_true",
                   help="delete even if later incrementals depend on it (they become unrestorable); drop it from "
                        "the catalog when the store no longer has it")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="say what would be deleted (or aborted) and what it still costs; change nothing")
    p.add_argument("-y", "--yes", action="store_true",
                   help="do not ask (on a terminal, zg-rm asks before deleting; off one it never asks)")
    p.add_argument("--json", action="store_true",
                   help="with --dry-run and an ID: the plan as JSON (schema zfsglacier.rm-plan/1, docs/json.md)")
    p.add_argument("--bypass-governance", action="store_true",
                   help="delete an archive under a governance Object Lock before its date (the credentials need "
                        "s3:BypassGovernanceRetention; a compliance lock never yields)")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    if args.incomplete == bool(args.id):
        raise UsageError("give an archive ID, or --incomplete (not both)")
    if args.json and (not args.dry_run or args.incomplete):
        raise UsageError("--json goes with --dry-run and an archive ID (the plan)")
    config, store, dest = open_dest(args)
    if args.incomplete:
        return remove_incomplete(store, args, config, dest)
    with catalog(args, config, create=False) as cat:
        known = cat.get(dest, args.id)
        needed_by = chains.dependents(cat.archives(dest), known) if known is not None and known.toguid else []
        if not args.force:
            if needed_by:
                raise UsageError(f"{args.id} ({known.name}) is the base of {len(needed_by)} later archive(s), e.g. "
                                 f"{needed_by[0].id}: deleting it makes them unrestorable (zg-prune knows chains; "
                                 f"--force to delete anyway)")
        if known is not None:  # no store round trip (a vault would need an inventory job, hours at AWS)
            size, created, storage_class = known.size, known.uploaded, known.storage_class
        else:
            info = store.stat(args.id)
            size, created, storage_class = info.size, info.created, info.storage_class
        cls = store.price_class(storage_class)
        age = time.time() - created
        days_left, charge = cost.early_deletion(size, cls, age)
        name = known.name if known is not None else None
        if args.json:
            schema.dump("rm-plan", destination=dest, prices_as_of=cost.as_of(),
                        archive=dict(id=args.id, name=name, size=size, storage_class=storage_class),
                        age_days=age / 86400, min_days=cost.min_days(cls), early_deletion_dollars=charge,
                        dependents=[a.id for a in needed_by])
            return 0
        what = f"{args.id} ({name + ', ' if name else ''}{cost.human_bytes(size)} in {cls}, {age / 86400:.0f} days old)"
        still = (f"; {cls} bills at least {cost.min_days(cls)} days, so deleting it now still costs about "
                 f"{cost.dollars(charge)} ({cost.as_of()})" if days_left > 0 else "")
        if needed_by:
            still += f"; {len(needed_by)} later archive(s) depend on it and become unrestorable"
        if args.dry_run:
            print(f"would delete {what}{still}")
            return 0
        if still:
            sys.stderr.write(f"zg-rm: note: {what}{still}\n")
        confirm(args, f"delete {what} from {dest}?")
        try:
            store.delete(args.id, bypass_governance=args.bypass_governance)
        except NotFoundError:
            if known is None or not args.force:
                raise NotFoundError(f"{args.id} is not in {dest}" + (" (already deleted or hidden there); --force "
                                    "removes it from the catalog" if known is not None else "")) from None
            sys.stderr.write(f"zg-rm: note: {args.id} was not in {dest}; removed from the catalog\n")
        cat.mark_deleted(dest, args.id)
        if known is not None and known.dataset:  # its snapshot may no longer be the next base
            for w in backup.keep_bases(open_zfs(), cat, known.dataset):
                sys.stderr.write(f"zg-rm: warning: {w}\n")
    return 0


def remove_incomplete(store, args, config, dest):
    """Abort what the store lists as incomplete uploads, started at least --older-than ago; never
    one that a run on this host is making (it holds the destination's upload lock)."""
    now = time.time()
    with catalog(args, config) as cat, Locks(lock_directory(cat.path)) as locks:
        locks.take(dest, UPLOADS, "zg-rm --incomplete")
        aborted = kept = 0
        for u in store.incomplete_uploads():
            # The later of the store's date and the one in our id: a store's clock or answer can be
            # wrong (moto says every upload began in 2010), and too old would abort a running one.
            started = max(u.started, stores.id_time(u.id) or 0)
            what = f"{printable(u.id)}  started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, " \
                   f"{u.parts} parts, {cost.human_bytes(u.size)}"
            if now - started < args.older_than:
                kept += 1
                print(f"kept     {what} (younger than --older-than)")
                continue
            if args.dry_run:
                aborted += 1
                print(f"would abort  {what}")
                continue
            confirm(args, f"abort the incomplete upload {what}?")
            store.discard_incomplete(u.ref)
            for pending in resume.listed(cat.path, dest):  # a resumable backup of it: given up too
                if pending.journal.ref == u.ref:
                    pending.journal.discard()
            aborted += 1
            print(f"aborted  {what}")
        if args.dry_run:
            print(f"{aborted} incomplete uploads would be aborted, {kept} kept")
            return 0
        cat.uploads_forgotten(dest, now - args.older_than)
    print(f"{aborted} incomplete uploads aborted, {kept} kept")
    return 0


def confirm(args, question):
    """On a terminal, ask (unless --yes); anything but yes deletes nothing.  Off a terminal (cron,
    a script), nothing is asked: the command line is the decision."""
    if args.yes or not (_tty(0) and _tty(2)):
        return
    sys.stderr.write(f"zg-rm: {question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("not confirmed: nothing was deleted (--yes deletes without asking)")


def _tty(fd):
    try:
        return os.isatty(fd)
    except OSError:
        return False


def main(argv=None):
    return run("zg-rm", body, argv)
