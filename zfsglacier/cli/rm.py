"""zg-rm: delete an archive, saying what an early deletion still costs."""

import sys
import time

from .. import backup, chains, cost
from ..errors import NotFoundError, UsageError
from ..zfs import open_zfs
from .common import parser, run
from .storeargs import add_store_options, catalog, open_dest


def body(argv):
    p = parser("zg-rm", "Delete archive ID at DEST (and mark it deleted in the catalog).")
    add_store_options(p)
    p.add_argument("id", metavar="ID")
    p.add_argument("--force", action="store_true",
                   help="delete even if later incrementals depend on it (they become unrestorable); drop it from "
                        "the catalog when the store no longer has it")
    args = p.parse_args(argv)
    config, store, dest = open_dest(args)
    with catalog(args, config) as cat:
        known = cat.get(dest, args.id)
        if known is not None and known.toguid is not None and not args.force:
            needed_by = chains.dependents(cat.archives(dest), known)
            if needed_by:
                raise UsageError(f"{args.id} ({known.name}) is the base of {len(needed_by)} later archive(s), e.g. "
                                 f"{needed_by[0].id}: deleting it makes them unrestorable (zg-prune knows chains; "
                                 f"--force to delete anyway)")
        if known is not None:  # no store round trip (a vault would need an inventory job, hours at AWS)
            size, created, storage_class = known.size, known.uploaded, known.storage_class
        else:
            info = store.stat(args.id)
            size, created, storage_class = info.size, info.created, info.storage_class
        cls = cost.class_of(dest, storage_class)
        days_left, charge = cost.early_deletion(size, cls, time.time() - created)
        if days_left > 0:
            sys.stderr.write(f"zg-rm: note: {args.id} is {cost.min_days(cls) - days_left:.0f} days old; {cls} bills "
                             f"at least {cost.min_days(cls)} days, so deleting now still costs about "
                             f"{cost.dollars(charge)} ({cost.as_of()})\n")
        try:
            store.delete(args.id)
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


def main(argv=None):
    return run("zg-rm", body, argv)
