"""zg-restore: bring DATASET@SNAP back into TARGET with one command, whatever chain it takes."""

import sys

from ..catalog import chains
from ..errors import NotFoundError
from ..services import restore
from .common import parser, run
from .keyargs import add_key_options, add_signer_option, identities, signers
from .progress import Progress
from .storeargs import (add_store_options, add_thaw_options, catalog, jobs, open_dest, recorded_elsewhere,
                        thaw_policy)
from ..zfs import open_zfs


def body(argv):
    p = parser("zg-restore", "Restore DATASET@SNAP from DEST into the new dataset TARGET: works out the chain "
                             "(full + incrementals), thaws, fetches, decrypts and receives each archive.")
    add_store_options(p)
    p.add_argument("snapshot", metavar="DATASET@SNAP", help="as zg-ls shows it (or DATASET@guid:N)")
    p.add_argument("target", metavar="TARGET", help="dataset to create; an existing one only with --force")
    add_key_options(p, "identity")
    add_thaw_options(p)
    add_signer_option(p)
    p.add_argument("--force", action="store_true", help="receive into TARGET even if it exists (overwrites it)")
    p.add_argument("--dry-run", action="store_true", help="print the chain, bytes, retrieval time and cost per "
                                                          "tier; change nothing")
    args = p.parse_args(argv)
    config, store, dest = open_dest(args)
    with catalog(args, config, write=False, create=False) as cat:
        try:
            rows, row = restore.find_snapshot(cat, dest, args.snapshot)
        except NotFoundError as err:
            hint = recorded_elsewhere(cat, dest, restore.names(args.snapshot), include_deleted=False)
            raise NotFoundError(f"{err}{hint}") from None
        if args.dry_run:
            chain = chains.chain_to(rows, row.toguid, args.snapshot)
            print(f"{args.snapshot} -> {args.target}:")
            print(restore.describe(chain, lambda a: store.price_class(a.storage_class)))
            return 0
        idents, _ = identities(args)
        progress = Progress("restore")
        zfs = open_zfs()
        chain, skipped = restore.restore(
            zfs, store, cat, dest, args.snapshot, args.target, idents, policy=thaw_policy(args),
            force=args.force, jobs=jobs(args, config), say=progress.say, signers=signers(args, config))
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


def main(argv=None):
    return run("zg-restore", body, argv)
