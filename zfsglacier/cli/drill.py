"""zg-drill: a restore drill.  A random archive chain within the budget is thawed (at the Bulk
tier unless told), fetched and checked end to end, or with --receive received into a new scratch
dataset and compared file by file with its source where the source still has that snapshot; the
result is noted in the catalog for zg-status.  A drill that must wait for a thaw and is stopped
(--no-wait, a reboot) is finished by the next run, which picks nothing new."""

import os
import sys
import time

from ..errors import IntegrityError, UsageError, ZgError
from ..services import cost, drill, restore, thaw
from ..services.verify import verify_archive
from ..zfs import open_zfs
from . import jobs as jobs_config
from . import schema
from .common import parser, run
from .jobs import add_job_option
from .keyargs import add_key_options, add_signer_option, default_keys, given, identities, signers
from .progress import Progress, add_progress_option
from .sizes import parse_dollars
from .storeargs import add_store_options, add_thaw_options, catalog, jobs, open_dest, thaw_policy

EXAMPLES = [
    ("zg-drill offsite --key ~/.zg/offsite.key --max-cost 1",
     "thaw (Bulk), fetch and authenticate a random chain that costs at most $1"),
    ("zg-drill offsite --key ~/.zg/offsite.key --receive tank/scratch",
     "receive it into a new tank/scratch/drill-TIME, compare it with the source snapshot, destroy it again"),
    ("zg-drill --job nightly", "the job's monthly drill (its destination, datasets, drill_key, drill_max_cost)"),
]


def build_parser():
    p = parser("zg-drill", "Test a restore: pick an archive chain at random within the budget, thaw it at the "
                           "cheapest tier, fetch, decrypt and verify it end to end (or receive it into a scratch "
                           "dataset and compare it with its source), and note the result for zg-status.",
               examples=EXAMPLES)
    add_store_options(p, dest_optional=True)
    add_job_option(p, "drill the datasets")
    add_key_options(p, "identity", why="without one, only the store's checksums and the recorded SHA-256 are checked")
    add_thaw_options(p)
    p.set_defaults(tier="Bulk")
    add_signer_option(p)
    p.add_argument("--max-cost", type=parse_dollars, metavar="DOLLARS",
                   help="pick only chains whose thaw costs at most this (the price table's estimate)")
    p.add_argument("--receive", metavar="PARENT",
                   help="receive the chain into a new dataset PARENT/drill-<UTC time> (PARENT must exist), compare "
                        "its files with the source snapshot where this host still has it, then destroy it")
    p.add_argument("--keep", action="store_true", help="with --receive: keep the scratch dataset")
    p.add_argument("--json", action="store_true", help="the result as JSON (schema zfsglacier.drill/1)")
    add_progress_option(p)
    return p


def body(argv):
    p, args, job = jobs_config.parse(build_parser, argv)
    datasets = None
    if job is not None:
        jobs_config.apply(args, job, p, {})
        # the job's keys are recipients (.pub): a drill decrypts with its drill_key, if it has one
        default_keys(args, [job.get("drill_key")] if job.get("drill_key") else [])
        if args.max_cost is None and job.get("drill_max_cost") is not None:
            args.max_cost = float(job.get("drill_max_cost"))
        datasets = job.datasets
    if not args.dest:
        raise UsageError("give DEST, or --job NAME (see zg-drill --help)")
    if args.keep and not args.receive:
        raise UsageError("--keep goes with --receive (the scratch dataset)")
    config, store, dest = open_dest(args)
    idents = identities(args)[0] if given(args) else []
    if args.receive and not idents:
        raise UsageError("--receive decrypts: give --key (the secret key)")
    required = signers(args, config)
    now = time.time()
    with catalog(args, config, write=False, create=False) as cat:
        archives = cat.archives(dest)
        class_of = lambda a: store.price_class(a.storage_class)  # noqa: E731

        def price(chain):
            return sum(r.dollars for cls, (size, n) in cost.by_class(chain.archives, class_of).items()
                       for r in cost.retrieval_options(size, cls, objects=n) if r.tier in (args.tier, "immediate"))

        chain = drill.pending(cat, dest, archives, now)
        resumed = chain is not None
        if chain is None:
            chain = drill.pick(archives, price, budget=args.max_cost, datasets=datasets).chain
        target = chain.target
        if not args.json:  # the report's first line, before any wait
            print(f"{'finishing the drill of' if resumed else 'drilling'} {target.name} (a chain of "
                  f"{len(chain.archives)} archive(s), {cost.human_bytes(chain.size)}); thawing at {args.tier} costs "
                  f"about {cost.dollars(price(chain))} ({cost.as_of()})")
            sys.stdout.flush()
        drill.note_pending(cat, dest, chain)
        progress = Progress("drill", mode=args.progress)
        thaw.thaw_all(store, dest, cat, [a.id for a in chain.archives], thaw_policy(args), progress.say)
        try:
            how, compared = _check(args, store, cat, dest, chain, idents, required, config, progress)
        except ZgError as err:
            for a in chain.archives:
                cat.checked(dest, a.id, "drill", "FAIL", str(err))
            cat.forget_checks(dest, "drill", drill.PENDING)
            raise IntegrityError(f"drill of {target.name} failed: {err}") from None
        finally:
            progress.end()
        for a in chain.archives:
            cat.checked(dest, a.id, "drill", "ok", how)
            cat.thaw_done(dest, a.id)
        cat.forget_checks(dest, "drill", drill.PENDING)
    if args.json:
        schema.dump("drill", destination=dest, snapshot=target.name, archives=[a.id for a in chain.archives],
                    bytes=chain.size, tier=args.tier, dollars=price(chain), prices_as_of=cost.as_of(), result="ok",
                    checked=how, compared=compared)
    else:
        print(f"drill passed: {target.name} from {dest}, {len(chain.archives)} archive(s), {how}"
              + (f"; {compared}" if compared else ""))
    return 0


def _check(args, store, cat, dest, chain, idents, required, config, progress):
    """Read the chain back: received and compared (--receive), else verified archive by archive.
    Returns (what was checked, what was compared) in words."""
    if not args.receive:
        for i, a in enumerate(chain.archives):
            progress.begin(f"drill {i + 1}/{len(chain.archives)}", a.size)
            verify_archive(store, a, idents, jobs(args, config), required, progress)
            progress.end()
        return ("every chunk authenticated" if idents else "checksums only (no key: not decrypted)"), None
    zfs = open_zfs()
    if not zfs.exists(args.receive):
        raise UsageError(f"{args.receive} does not exist: create it (`zfs create {args.receive}`), the drills are "
                         f"received under it")
    scratch = f"{args.receive}/drill-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    target = chain.target
    restore.restore(zfs, store, cat, dest, target.id, scratch, idents, policy=thaw_policy(args), jobs=jobs(args, config),
                    watch=progress, signers=required)
    progress.end()
    try:
        compared = _compare(zfs, target, scratch)
    finally:
        if not args.keep:
            zfs.destroy_drilled(scratch, target.toguid)
    return f"received into {scratch}" + ("" if not args.keep else " (kept)"), compared


def _compare(zfs, target, scratch):
    """The restored files against the source's, where this host still has the snapshot: in its
    .zfs/snapshot directory (OpenZFS), or its live files when nothing changed since (zfs-fuse has
    no .zfs)."""
    source = target.dataset
    if not source or not target.snapshot or not zfs.exists(source):
        return "the source is not on this host: the snapshot's guid was checked"
    snaps = zfs.snapshots(source)
    snap = next((s for s in snaps if s.guid == target.toguid), None)
    if snap is None:
        return f"{source} no longer has @{target.snapshot}: the snapshot's guid was checked"
    root = zfs.mountpoint(source)
    where = os.path.join(root, ".zfs", "snapshot", snap.short) if root else None
    if where is None or not os.path.isdir(where):
        if snaps[-1].guid != snap.guid or zfs.changes_since(source, snap) is not None:
            return f"{source} changed since @{snap.short} and has no .zfs/snapshot here: the snapshot's guid was checked"
        where = root
    files, differences = drill.compare(drill.tree_digest(where), drill.tree_digest(zfs.mountpoint(scratch)))
    if differences:
        raise IntegrityError(f"the restore differs from {source}@{snap.short}: {'; '.join(differences)}")
    return f"{files} files identical to {source}@{snap.short}"


def main(argv=None):
    return run("zg-drill", body, argv, report=True, hooks=True)
