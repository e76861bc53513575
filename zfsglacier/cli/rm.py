"""zg-rm: delete an archive, saying what an early deletion still costs."""

import sys
import time

from .. import cost
from .common import parser, run
from .storeargs import add_store_options, catalog, open_dest


def body(argv):
    p = parser("zg-rm", "Delete archive ID at DEST (and mark it deleted in the catalog).")
    add_store_options(p)
    p.add_argument("id", metavar="ID")
    args = p.parse_args(argv)
    config, store, dest = open_dest(args)
    with catalog(args, config) as cat:
        info = store.stat(args.id)
        cls = cost.class_of(dest, info.storage_class)
        days_left, charge = cost.early_deletion(info.size, cls, time.time() - info.created)
        if days_left > 0:
            sys.stderr.write(f"zg-rm: note: {args.id} is {cost.min_days(cls) - days_left:.0f} days old; {cls} bills "
                             f"at least {cost.min_days(cls)} days, so deleting now still costs about "
                             f"{cost.dollars(charge)} ({cost.as_of()})\n")
        store.delete(args.id)
        cat.mark_deleted(dest, args.id)
    return 0


def main(argv=None):
    return run("zg-rm", body, argv)
