"""What the transfer commands share: destination, catalog and store options."""

import os
import sys

from ..services import cost, thaw
from .. import stores
from ..catalog.db import catalog_path, open_catalog, probed_capabilities
from ..config import load_config
from ..errors import UsageError


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
    cost.use_prices(os.environ.get(PRICES_ENV))
    store = stores.open_store(args.dest, config=config, **options)
    assume_probed(store, args, config)
    warning = store.warning()
    if warning:
        sys.stderr.write(f"{os.path.basename(sys.argv[0]) or 'zg'}: warning: {warning}\n")
    return config, store, store.url


def assume_probed(store, args, config):
    """What zg-doctor recorded about this destination's server, given to the store (nothing asked
    again).  A catalog that cannot be read is left to the command, which says why if it needs it."""
    path = catalog_path(getattr(args, "catalog", None), config)
    if os.path.exists(path):
        store.assume(probed_capabilities(path, store.url))


def catalog(args, config, *, write=True, create=True):
    """The catalog for this command: ``write`` if it records anything (then it must be writable,
    checked before anything is changed), ``create`` if a missing one may be started empty."""
    return open_catalog(args.catalog, config, write=write, create=create)


def jobs(args, config):
    return args.jobs or stores.store_jobs(args.dest, config=config)


def catalog_copy_store(args, config, store):
    """The catalog copy goes to the same place, but readable at once where the store has a hot
    variant (S3's STANDARD class): it is tiny, and wanted exactly when everything else is lost."""
    hot = store.properties.hot_options
    return stores.open_store(args.dest, config=config, **hot) if hot else store


PRICES_ENV = "ZG_PRICES"  # your own copy of the price table (read here: services get no environment)
POLL_ENV = "ZG_POLL_SECONDS"  # the default of --poll (read here, in the cli: services get a Policy)


def add_thaw_options(p):
    p.add_argument("--tier", default="Standard", choices=stores.TIERS,
                   help="retrieval tier for cold archives (DEEP_ARCHIVE has no Expedited)")
    p.add_argument("--days", type=int, default=7, help="days an S3 restored copy stays readable (default 7)")
    p.add_argument("--no-wait", action="store_true",
                   help="request the thaw and exit 75 if it is not done yet; run again later")
    p.add_argument("--poll", type=float, metavar="SECONDS",
                   help=f"first wait between thaw checks, growing by half each time up to 15 minutes "
                        f"(default: ${POLL_ENV}, else 60)")


def thaw_policy(args):
    """The thaw service's policy from the thaw options."""
    poll = args.poll if args.poll is not None else _seconds(os.environ.get(POLL_ENV) or "60", f"${POLL_ENV}")
    if not poll > 0:
        raise UsageError(f"--poll {poll:g}: give a number of seconds above 0")
    return thaw.Policy(tier=args.tier, days=args.days, wait=not args.no_wait, poll=poll)


def _seconds(text, what):
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{what}={text!r}: not a number of seconds") from None
