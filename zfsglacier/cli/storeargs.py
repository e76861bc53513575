"""What the transfer commands share: destination, catalog and store options."""

import os
import sys

from .. import stores
from ..catalog import open_catalog
from ..config import load_config


def add_store_options(p, *, dest=True):
    if dest:
        p.add_argument("dest", metavar="DEST",
                       help="s3://bucket/prefix, glacier://vault, file:///path, or a NAME from config.toml")
    p.add_argument("--catalog", metavar="PATH", help="catalog file (default: $ZG_CATALOG, config.toml, "
                                                     "~/.local/share/zfsglacier/catalog.db)")
    p.add_argument("--jobs", type=int, metavar="N", help="transfers in flight (default 4)")


def open_dest(args, **options):
    """(config, store, canonical destination URL) for args.dest."""
    config = load_config()
    store = stores.open_store(args.dest, config=config, **options)
    warning = store.warning()
    if warning:
        sys.stderr.write(f"{os.path.basename(sys.argv[0]) or 'zg'}: warning: {warning}\n")
    return config, store, store.url


def catalog(args, config, *, write=True, create=True):
    """The catalog for this command: ``write`` if it records anything (then it must be writable,
    checked before anything is changed), ``create`` if a missing one may be started empty."""
    return open_catalog(args.catalog, config, write=write, create=create)


def jobs(args, config):
    return args.jobs or stores.store_jobs(args.dest, config=config)


def catalog_copy_store(args, config, store):
    """The catalog copy goes to the same place, but on S3 in STANDARD: tiny, and readable at once."""
    if store.kind == "s3":
        return stores.open_store(args.dest, config=config, storage_class="STANDARD")
    return store
