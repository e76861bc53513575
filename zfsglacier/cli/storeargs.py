"""What the transfer commands share: destination, catalog and store options."""

import os
import socket
import sys

from ..services import cost, thaw
from .. import stores
from ..catalog.db import catalog_path, open_catalog, probed_capabilities, records_archives
from ..config import load_config
from ..errors import UsageError
from ..plumbing.pipes import one_malloc_arena


def add_store_options(p, *, dest=True, dest_optional=False):
    if dest:
        p.add_argument("dest", metavar="DEST", **({"nargs": "?"} if dest_optional else {}),
                       help="s3://bucket/prefix, glacier://vault, file:///path, or a NAME from config.toml"
                            + ("; with --job, the job's" if dest_optional else ""))
    p.add_argument("--catalog", metavar="PATH", help="catalog file (default: $ZG_CATALOG, config.toml, "
                                                     "~/.local/share/zfsglacier/catalog.db)")
    p.add_argument("--jobs", type=int, metavar="N", help="transfers in flight (default 4)")
    p.add_argument("--host", metavar="ID", help="s3:// only: the archives of host ID (under DEST's prefix + /ID) "
                                                "instead of this host's; \"\" for those right under the prefix")


def host_of(args, config):
    """Where under an s3:// destination this command's archives are: ``--host``; else the named
    destination's ``host`` setting ("auto": this machine's name); else, unset, this machine's name
    (so that hosts sharing a bucket never share a prefix), except for a destination this host's
    catalog already records archives right under (used before per-host prefixes: it keeps its
    layout).  A URL on the command line is taken as it is, unless --host is given.  None: not an
    s3:// destination."""
    given = getattr(args, "host", None)
    dest = args.dest
    if "://" in dest or dest.startswith("/"):
        if given:
            stores.with_host(dest, given)  # refused unless s3://
        return given or None
    named = config.destination(dest)
    if not named.url.lower().startswith("s3://"):
        if given:
            stores.with_host(named.url, given)  # refused: not s3://
        if named.options.get("host"):
            raise UsageError(f"destination {dest!r}: host applies to s3:// destinations")
        return None
    if given is not None:
        return given
    setting = named.options.get("host")
    if setting is None:
        setting = "" if _recorded_at(args, config, named.url) else "auto"
    return this_host() if setting == "auto" else setting


def host_defaulted(args, config):
    """The host prefix was chosen by default (a named s3:// destination without ``host``, no --host)."""
    if getattr(args, "host", None) is not None or "://" in args.dest or args.dest.startswith("/"):
        return False
    named = config.destination(args.dest)
    return named.url.lower().startswith("s3://") and named.options.get("host") is None


def elsewhere(args, config, store):
    """What the destination holds outside this command's host prefix, in words for a message
    (None when it has no host prefix, or nothing else is there): other hosts' prefixes, and
    archives right under the prefix (the layout before per-host prefixes)."""
    host = host_of(args, config)
    if not host:
        return None
    base = stores.open_store(args.dest, config=config, host="")
    hosts = [h for h in base.hosts() if h != host]
    flat = next(iter(base.list()), None) is not None
    if not hosts and not flat:
        return None
    words = []
    if hosts:
        words.append(f"host prefixes {', '.join(hosts[:10])}{' ...' if len(hosts) > 10 else ''} "
                     f"(`zg-ls {args.dest} --all-hosts`; --host ID for one of them)")
    if flat:
        words.append("archives right under the prefix, of the layout before per-host prefixes (--host \"\", "
                     "or host = \"\" for the destination)")
    return f"{store.url} holds none of them, but {base.url} holds " + ", and ".join(words)


def recorded_elsewhere(cat, dest, named, *, include_deleted=True):
    """A hint for a "not found": where the catalog knows an archive ``named(row)`` selects under
    a host prefix of ``dest`` (a named destination's archives are under url/<host>, and a URL is
    taken as written); "" when it knows none there."""
    base = dest.rstrip("/") + "/"
    for row in cat.archives(include_deleted=include_deleted):
        if named(row) and row.dest.startswith(base):
            return f" (the catalog has it at {row.dest}: give --host {row.dest[len(base):]}, or the destination's name)"
    return ""


def this_host():
    name = socket.gethostname().split(".")[0]
    try:
        return stores.check_host(name)
    except UsageError:
        raise UsageError(f"this machine's name {name!r} is not a host id: set host = \"ID\" for the "
                         f"destination, or give --host ID") from None


def _recorded_at(args, config, url):
    path = catalog_path(getattr(args, "catalog", None), config)
    return os.path.exists(path) and records_archives(path, url)


def open_dest(args, **options):
    """(config, store, canonical destination URL) for args.dest (under this host's prefix:
    host_of).

    Every command that opens a destination may move parts between threads, so malloc keeps one
    arena from here on (plumbing/pipes.py says why)."""
    one_malloc_arena()
    config = load_config()
    cost.use_prices(os.environ.get(PRICES_ENV))
    host = host_of(args, config)
    if host is not None:
        options["host"] = host
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
    if not hot:
        return store
    host = host_of(args, config)
    return stores.open_store(args.dest, config=config, **hot, **({"host": host} if host is not None else {}))


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
