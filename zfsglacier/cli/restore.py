"""zg-restore: bring DATASET@SNAP back into TARGET with one command, whatever chain it takes."""

import sys

from ..catalog import chains
from ..errors import NotFoundError
from ..services import cost, restore
from . import schema
from .common import parser, run
from .keyargs import add_key_options, add_signer_option, identities, signers
from .progress import Progress, add_progress_option
from .storeargs import (add_store_options, add_thaw_options, catalog, jobs, open_dest, recorded_elsewhere,
                        thaw_policy)
from ..zfs import open_zfs


EXAMPLES = [
    ('zg-restore offsite tank/db@zg-20261127T030000Z tank/db-restored --key ~/.zg/offsite.key',
     'the chain worked out, thawed, fetched, verified and received into a new dataset'),
    ('zg-restore offsite tank/db@zg-20261127T030000Z tank/db-restored --dry-run',
     'the chain, bytes, thaw time and cost per tier; nothing changes'),
    ('zg-restore offsite tank/db@zg-20261127T030000Z tank/db-restored --key k.key --tier Bulk --no-wait',
     'request the cheapest thaws and exit 75; run the same command again later'),
]


def build_parser():
    p = parser("zg-restore", "Restore DATASET@SNAP from DEST into the new dataset TARGET: works out the chain "
                             "(full + incrementals), thaws, fetches, decrypts and receives each archive.", examples=EXAMPLES)
    add_store_options(p)
    p.add_argument("snapshot", metavar="DATASET@SNAP", help="as zg-ls shows it (or DATASET@guid:N)")
    p.add_argument("target", metavar="TARGET", help="dataset to create; an existing one only with --force")
    add_key_options(p, "identity")
    add_thaw_options(p)
    add_signer_option(p)
    p.add_argument("--force", action="store_true", help="receive into TARGET even if it exists (overwrites it)")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the chain, bytes, retrieval time and cost per "
                                                          "tier; change nothing")
    schema.add_plan_option(p, "restore-plan")
    add_progress_option(p)
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    schema.check_plan_option(args)
    config, store, dest = open_dest(args)
    with catalog(args, config, write=False, create=False) as cat:
        try:
            rows, row = restore.find_snapshot(cat, dest, args.snapshot)
        except NotFoundError as err:
            hint = recorded_elsewhere(cat, dest, restore.names(args.snapshot), include_deleted=False)
            raise NotFoundError(f"{err}{hint}") from None
        if args.dry_run:
            chain = chains.chain_to(rows, row.toguid, args.snapshot)
            class_of = lambda a: store.price_class(a.storage_class)  # noqa: E731
            if args.json:
                _json_plan(args, dest, chain, class_of)
                return 0
            print(f"{args.snapshot} -> {args.target}:")
            print(restore.describe(chain, class_of))
            return 0
        idents, _ = identities(args)
        progress = Progress("restore", mode=args.progress)
        zfs = open_zfs()
        chain, skipped = restore.restore(
            zfs, store, cat, dest, args.snapshot, args.target, idents, policy=thaw_policy(args),
            force=args.force, jobs=jobs(args, config), watch=progress, signers=signers(args, config))
    progress.done()
    if skipped == len(chain.archives):
        print(f"nothing to do: {args.target} already has {args.snapshot} (guid {chain.target.toguid})")
    else:
        resumed = f", {skipped} of them already there" if skipped else ""
        print(f"restored {args.snapshot} into {args.target}: {len(chain.archives)} archives{resumed}")
    sys.stdout.flush()
    locked = restore.locked_after(zfs, chain, args.target)
    if locked:
        sys.stderr.write(f"zg-restore: note: {locked}\n")
    return 0


def _json_plan(args, dest, chain, class_of):
    retrieval = []
    for cls, (size, n) in sorted(cost.by_class(chain.archives, class_of).items()):
        retrieval += [dict(storage_class=cls, tier=r.tier, hours=r.hours, dollars=r.dollars, archives=n, bytes=size)
                      for r in cost.retrieval_options(size, cls, objects=n)]
    archives = [dict(id=a.id, name=a.name, size=a.size, storage_class=a.storage_class,
                     kind="incremental" if a.fromguid else "full") for a in chain.archives]
    schema.dump("restore-plan", destination=dest, snapshot=args.snapshot, target=args.target,
                prices_as_of=cost.as_of(), archives=archives, bytes=chain.size, retrieval=retrieval)


def main(argv=None):
    return run("zg-restore", body, argv)
