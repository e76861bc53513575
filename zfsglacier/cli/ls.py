"""zg-ls: what a destination holds, from the catalog (or --remote, from the store itself)."""

import datetime
import os
import sys
import tempfile
import time
from types import SimpleNamespace

from ..services import backup, cost, rebuild, resume
from ..catalog import chains
from .. import stores
from ..catalog.db import Catalog
from ..config import load_config
from ..errors import UsageError
from ..format.metadata import MetadataError, PublicMetadata, printable
from .storeargs import add_store_options, catalog, open_dest
from . import schema
from .common import parser, run
from .keyargs import add_key_options, given, identities
from ..zfs import open_zfs


def _age(ts, now):
    days = (now - ts) / 86400
    return f"{days:.0f}d" if days >= 1 else f"{(now - ts) / 3600:.0f}h"


def _print_chains(out, archived, now):
    """Each chain as full -> incr -> incr, then whatever is not on a chain (non-ZFS, broken links)."""
    shown = set()
    for n, chain in enumerate(chains.chains(archived), 1):
        head = chain[0]
        gone = next((i for i, a in enumerate(chain) if a.missing), None)
        broken = "" if gone is None else (f", BROKEN at {chain[gone].id}: snapshots from "
                                          f"{chain[gone].snapshot or chain[gone].toguid} on cannot be restored")
        tree = " and every dataset under it (zfs send -R)" if "-R" in head.meta.send_flags else ""
        out(f"  chain {n}: {head.dataset or '?'}{tree}, {len(chain)} archives, "
            f"{cost.human_bytes(sum(a.size for a in chain))}{broken}\n")
        for i, a in enumerate(chain):
            shown.add(a.id)
            state = "  MISSING from the store (hidden or deleted)" if a.missing else \
                "  unrestorable (an earlier link is missing)" if gone is not None and i > gone else ""
            if a.locked_until and a.locked_until > now:
                state += f"  locked until {time.strftime('%Y-%m-%d', time.gmtime(a.locked_until))} ({a.lock_mode})"
            out(f"    {'full' if not a.fromguid else '-> incr':7}  {a.snapshot or 'guid:' + str(a.toguid):24}  "
                f"{cost.human_bytes(a.size):>10}  {a.storage_class or '-':12}  {_age(a.uploaded, now):>5}  {a.id}"
                f"{state}\n")
    rest = [a for a in archived if a.id not in shown]
    if rest:
        out("  not on any complete chain (non-ZFS input, or a missing base):\n")
        for a in rest:
            out(f"    {a.name:30}  {cost.human_bytes(a.size):>10}  {a.storage_class or '-':12}  "
                f"{_age(a.uploaded, now):>5}  {a.id}\n")


def _finish_hint(upload, dest):
    """Only commands that can work for how the upload was started."""
    free = f"`zg-rm --incomplete {dest}` frees what it stored"
    journaled = upload.get("resumable")
    if upload.get("command") == "zg-backup" and journaled:
        return (f"resumable: a zg-backup of {journaled['snapshot']} that was stopped with up to "
                f"{cost.human_bytes(journaled['bytes'])} sent ({journaled['parts']} parts); the next zg-backup of "
                f"{journaled['dataset']} continues it (same snapshot, flags and keys; else it starts anew and "
                f"frees this), or {free}")
    if upload.get("command") == "zg-backup":
        return f"a zg-backup that was stopped; run it again (it starts anew), and {free}"
    if upload.get("command") == "zg-upload":
        return (f"`zg-upload --resume {dest} < FILE` continues it if its input was a file (not a pipeline: "
                f"encryption makes new bytes each run); else {free}")
    return free  # seen in the store (--remote): who started it is not known here


def _print_holds(out, rows, dest):
    out(f"holds ({backup.hold_tag(dest)} keeps the next incremental's base):\n")
    for h in rows:
        if "snapshot" not in h:
            out(f"  {h['dataset']}: {h['state']}\n")
            continue
        tags = ", ".join(h["tags"]) if h["tags"] else f"{h['userrefs']} hold(s) (this ZFS cannot list their tags)"
        what = "  <- next base for this destination" if h["base"] else ""
        if h["base"] and not h["held"]:
            what += ": NOT HELD for it (`zfs destroy` could remove it; the next zg-backup holds it again)"
        out(f"  {h['snapshot']}  {tags if h['userrefs'] else 'no holds'}{what}\n")


EXAMPLES = [
    ('zg-ls offsite',
     'every chain from the catalog: snapshots, sizes, classes, ages, monthly cost'),
    ('zg-ls offsite tank/db --holds',
     'one dataset, and which local snapshots are held as the next base'),
    ('zg-ls offsite --remote --json',
     'what the store itself holds, as JSON'),
]


def build_parser():
    p = parser("zg-ls", "List the archives at DEST: from the local catalog, or with --remote from the store.", examples=EXAMPLES)
    add_store_options(p)
    p.add_argument("dataset", nargs="?", help="only this dataset (and its children)")
    p.add_argument("--remote", action="store_true", help="ask the store (vaults: this starts an inventory job)")
    p.add_argument("--holds", action="store_true", help="also show which local snapshots are held (`zfs hold`) "
                                                          "as the base of the next incremental to DEST")
    p.add_argument("--all-hosts", action="store_true",
                   help="every host's chains under DEST's prefix (s3://: one prefix per host), read from the store "
                        "itself: public metadata, and with --key the names in each host's catalog copies")
    add_key_options(p, "identity", why="with --all-hosts: recover names from each host's catalog copies")
    p.add_argument("--json", action="store_true", help="machine-readable output (schemas zfsglacier.ls/1, "
                                                       "zfsglacier.ls-remote/1, zfsglacier.ls-hosts/1; docs/json.md)")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    if args.all_hosts:
        return _all_hosts(args)
    config, store, dest = open_dest(args)
    now = time.time()
    with catalog(args, config, write=False, create=False) as cat:
        if args.remote:
            rows = [dict(id=a.id, size=a.size, created=a.created, storage_class=a.storage_class, state=a.state,
                         sha256=a.sha256, metadata=a.metadata, locked_until=a.locked_until, lock_mode=a.lock_mode)
                    for a in store.list()]
            incomplete = [dict(id=u.id, ref=u.ref, started=u.started, parts=u.parts, size=u.size)
                          for u in store.incomplete_uploads()]
        else:
            archived = [a for a in cat.archives(dest)
                        if not args.dataset or (a.dataset or "") == args.dataset
                        or (a.dataset or "").startswith(args.dataset + "/")]
            rows = [dict(id=a.id, size=a.size, created=a.uploaded, storage_class=a.storage_class,
                         name=a.name, dataset=a.dataset, toguid=a.toguid, fromguid=a.fromguid,
                         snap_created=a.snap_created, sha256=a.sha256, locked_until=a.locked_until,
                         lock_mode=a.lock_mode) for a in archived]
            journaled = {p.token: p.describe() for p in resume.listed(cat.path, dest)}
            incomplete = [dict(u, resumable=journaled.get(u["token"])) for u in cat.uploads(dest)]
        thaws = cat.thaws(dest)
        held = backup.holds(open_zfs(), cat, dest) if args.holds else None
    if args.json:
        schema.dump("ls-remote" if args.remote else "ls", destination=dest, archives=rows,
                    incomplete_uploads=incomplete, thaws=thaws, **({"holds": held} if held is not None else {}))
        return 0
    out = sys.stdout.write
    groups = cost.by_class([SimpleNamespace(**r) for r in rows], lambda r: store.price_class(r.storage_class))
    total = sum(r["size"] for r in rows)
    names = cost.class_names(groups) if groups else store.price_class()
    out(f"{dest}: {len(rows)} archives, {cost.human_bytes(total)}, about "
        f"{cost.dollars(cost.monthly_by_class(groups))}/month ({names}, {cost.as_of()})\n")
    if args.remote:
        for r in rows:
            try:
                m = PublicMetadata.parse(r["metadata"])
                what, guid = m.kind or ("incr" if m.fromguid else "full"), m.toguid if m.toguid is not None else "-"
            except MetadataError:
                what, guid = "invalid", "?"  # fields not of their documented form: shown, not trusted
            out(f"  {printable(r['id'])}  {what:7}  {cost.human_bytes(r['size']):>10}  "
                f"{printable(r['storage_class'] or '-'):12}  {r['state']:8}  {_age(r['created'], now):>5}  "
                f"guid:{guid}\n")
    else:
        _print_chains(out, [a for a in archived if a.id in {r["id"] for r in rows}], now)
    for u in incomplete:
        out(f"  incomplete upload {u.get('id') or u.get('token')} started "
            f"{datetime.datetime.fromtimestamp(u['started']):%Y-%m-%d %H:%M}: {_finish_hint(u, dest)}\n")
    for t in thaws:
        out(f"  thaw of {t['id']} ({t['tier']}) requested {_age(t['requested'], now)} ago: {t['detail']}\n")
    if held is not None:
        _print_holds(out, held, dest)
    return 0


def _all_hosts(args):
    """Each host's archives, as a catalog rebuilt from the store would hold them (a temporary one:
    the local catalog is neither read nor changed); the archives right under the prefix too."""
    if args.host is not None or args.remote or args.holds:
        raise UsageError("--all-hosts reads every host's archives from the store: without --host, --remote, --holds")
    config = load_config()
    base = stores.open_store(args.dest, config=config, host="")
    idents = identities(args)[0] if given(args) else []
    now, doc, out = time.time(), [], sys.stdout.write
    for host in ["", *base.hosts()]:
        store = stores.open_store(base.url, host=host, **_store_options(args.dest, config))
        with tempfile.TemporaryDirectory(prefix="zg-ls-") as tmp, Catalog(os.path.join(tmp, "c.db")) as cat:
            rebuild.rebuild(store, cat, store.url, idents)
            archived = cat.archives(store.url)
        if not archived and host == "":
            continue
        doc.append({"host": host or None, "destination": store.url,
                    "archives": [dict(id=a.id, size=a.size, created=a.uploaded, storage_class=a.storage_class,
                                      name=a.name, dataset=a.dataset, toguid=a.toguid, fromguid=a.fromguid,
                                      identity=a.identity) for a in archived]})
        if not args.json:
            who = f"host {host}" if host else "right under the prefix (no host)"
            out(f"{store.url} ({who}): {len(archived)} archives, {cost.human_bytes(sum(a.size for a in archived))}\n")
            _print_chains(out, archived, now)
    if args.json:
        schema.dump("ls-hosts", destination=base.url, hosts=doc)
    elif not doc:
        out(f"{base.url}: no archives, and no host prefix with archives under it\n")
    return 0


def _store_options(dest, config):
    """A named destination's store settings (its url and host aside), for opening it elsewhere."""
    if "://" in dest or dest.startswith("/"):
        return {}
    return {k: v for k, v in config.destination(dest).options.items() if k in stores.STORE_OPTIONS["s3"]}


def main(argv=None):
    return run("zg-ls", body, argv, report=True)
