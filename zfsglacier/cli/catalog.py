"""zg-catalog: manage the local catalog (rebuild it from a destination, back it up there)."""

import sys

from .. import backup, rebuild
from .backup import catalog_store
from .common import parser, run
from .keyargs import identities, recipients
from .storeargs import add_store_options, catalog, jobs, open_dest


def body(argv):
    p = parser("zg-catalog", "Rebuild the local catalog from a destination, or upload an encrypted copy of it.")
    sub = p.add_subparsers(dest="cmd", required=True)
    rb = sub.add_parser("rebuild", help="read every archive's public fields (and, with --key, names) from DEST")
    add_store_options(rb)
    rb.add_argument("--key", dest="keys", action="append", default=[], metavar="KEY",
                    help="secret key file: also recover dataset and snapshot names")
    bk = sub.add_parser("backup", help="upload the catalog's rows for DEST to DEST, encrypted to --key")
    add_store_options(bk)
    bk.add_argument("--key", dest="keys", action="append", default=[], metavar="KEY", required=True)
    args = p.parse_args(argv)
    args.passphrase, args.passphrase_fd, args.recipient = False, None, []
    config, store, dest = open_dest(args)
    with catalog(args, config) as cat:
        if args.cmd == "rebuild":
            idents = identities(args)[0] if args.keys else []
            n, named = rebuild.rebuild(store, cat, dest, idents)
            print(f"{dest}: {n} archives recorded in {cat.path}, {named} with names"
                  + ("" if idents else " (give --key to recover names)"))
        else:
            info = backup.upload_catalog(catalog_store(args, config, store), cat, dest, recipients(args),
                                         jobs=jobs(args, config))
            print(info.id)
    sys.stdout.flush()
    return 0


def main(argv=None):
    return run("zg-catalog", body, argv)
