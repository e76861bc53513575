"""zg-verify: read archives back from a destination and check them end to end.

With --key, every chunk is authenticated and the trailer's length and plaintext digest are checked (the
same work as a restore, minus `zfs receive`); without a key, the store's checksums, the catalog's
SHA-256 and the archive's footer are checked.  Cold archives are thawed first (this costs money:
see `zg-restore --dry-run` for the per-tier price).

Every archive gets one line, `ok`, `FAIL` or `MISSING`, and the run goes on past each failure: an
archive deleted behind the tool's back is reported (and marked missing in the catalog, which
breaks the chains through it) while the rest are still checked.  Then a summary line.
"""

import random
import sys
import time

from ..services import cost, thaw
from ..services.verify import verify_archive
from ..errors import IntegrityError, NotFoundError, UsageError, ZgError
from . import schema
from .common import parser, run
from .sizes import parse_dollars
from .keyargs import add_key_options, add_signer_option, given, identities, signers
from .progress import Progress, add_progress_option
from .storeargs import add_store_options, add_thaw_options, catalog, jobs, open_dest, thaw_policy


EXAMPLES = [
    ('zg-verify offsite --key ~/.zg/offsite.key',
     'every archive fetched and authenticated end to end (cold: thawed first)'),
    ('zg-verify offsite 20261127T163200Z-1a2b3c4d',
     'one archive, store checksums and footer only (no key)'),
]


def build_parser():
    p = parser("zg-verify", "Fetch archives of DEST and check them end to end (all, or the IDs given).", examples=EXAMPLES)
    add_store_options(p)
    p.add_argument("ids", nargs="*", metavar="ID", help="only these archives (default: every archive of DEST in the catalog)")
    add_key_options(p, "identity", why="also authenticate every chunk and the trailer")
    add_thaw_options(p)
    add_signer_option(p)
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="say which archives would be read and what thawing them costs; read nothing")
    p.add_argument("--sample", type=int, metavar="N",
                   help="verify N archives chosen at random (with --max-cost: as many of N as it affords)")
    p.add_argument("--max-cost", type=parse_dollars, metavar="DOLLARS",
                   help="refuse to spend more than this on thaws (e.g. 5 or $0.50; the price table's estimate)")
    p.add_argument("--json", action="store_true",
                   help="the results (with --dry-run: the plan) as JSON (schemas zfsglacier.verify/1 and "
                        "zfsglacier.verify-plan/1, docs/json.md)")
    add_progress_option(p)
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    config, store, dest = open_dest(args)
    idents = identities(args)[0] if given(args) else []
    required = signers(args, config)
    if required and not idents:
        raise UsageError("--signer needs --key: a signature is checked once the header is read with a key")
    bad, gone, results = 0, [], []
    with catalog(args, config, write=False, create=False) as cat:
        rows = [r for r in cat.archives(dest) if not args.ids or r.id in args.ids]
        unknown = set(args.ids) - {r.id for r in rows}
        if unknown:
            raise NotFoundError(f"not in the catalog for {dest}: {', '.join(sorted(unknown))}")
        rows, price = _choose(args, store, rows)
        if args.dry_run:
            return _plan(args, dest, rows, price)
        if price.cold:
            sys.stderr.write(f"zg-verify: {price.words()}\n")
        progress = Progress("verify", mode=args.progress)  # a line per archive, ended before its result

        by_id = {r.id: r for r in rows}

        def report(row, result, n=None, detail=None):
            results.append(dict(id=row.id, name=row.name, result=result, bytes=n, detail=detail))
            cat.checked(dest, row.id, "verify", result, detail if result != "ok" else
                        ("authenticated" if idents else "checksums only"))
            if not args.json:
                words = f"{n} bytes" + ("" if idents else " (checksums only: no key)") if result == "ok" else detail
                print(f"{result:<7} {row.id}  {row.name}  {words}")
                sys.stdout.flush()

        def missing(archive_id, err):  # reported; the others are still checked
            row = by_id[archive_id]
            gone.append(row)
            cat.mark_missing(dest, row.id, time.time())
            report(row, "MISSING", detail=str(err))

        thaw.thaw_all(store, dest, cat, [r.id for r in rows], thaw_policy(args), progress.say, on_missing=missing)
        for i, row in enumerate(r for r in rows if r not in gone):
            progress.begin(f"verify {i + 1}/{len(rows) - len(gone)}", row.size)
            try:
                try:
                    n = verify_archive(store, row, idents, jobs(args, config), required, progress)
                finally:
                    progress.end()
                if row.missing:
                    cat.mark_present(dest, row.id)
                report(row, "ok", n)
            except NotFoundError as err:  # gone since the thaw check
                missing(row.id, err)
            except ZgError as err:
                bad += 1
                report(row, "FAIL", detail=str(err))
    summary = f"{len(rows) - bad - len(gone)} ok, {bad} failed, {len(gone)} missing, of {len(rows)} archives"
    if args.json:
        schema.dump("verify", destination=dest, with_key=bool(idents), archives=results,
                    ok=len(rows) - bad - len(gone), failed=bad, missing=len(gone),
                    **({"thaw": price.fields()} if price.cold else {}))
    if bad:
        raise IntegrityError(f"{summary}: see the FAIL lines")
    if gone:
        raise NotFoundError(f"{summary}: the missing ones are marked so in the catalog; chains through them "
                            f"are broken (`zg-ls DEST`)")
    if not args.json:
        print(summary)
    return 0


class _Price:
    """What thawing ``rows`` at ``tier`` costs and takes, by the price table."""

    def __init__(self, store, rows, tier):
        self.tier, self.n, self.bytes, self.dollars, self.hours, self.cold = tier, 0, 0, 0.0, 0.0, False
        for cls, (size, n) in cost.by_class(rows, lambda a: store.price_class(a.storage_class)).items():
            options = {r.tier: r for r in cost.retrieval_options(size, cls, objects=n)}
            option = options.get(tier) or options.get("immediate")
            if option is None:
                raise UsageError(f"{cls} has no {tier} retrieval tier (it has {', '.join(options)}): give --tier")
            self.dollars += option.dollars
            if option.tier != "immediate":
                self.cold, self.n, self.bytes = True, self.n + n, self.bytes + size
                self.hours = max(self.hours, option.hours)

    def words(self):
        return (f"thawing {self.n} archive(s), {cost.human_bytes(self.bytes)}, at the {self.tier} tier costs about "
                f"{cost.dollars(self.dollars)} and takes ~{self.hours:g} h ({cost.as_of()}); --max-cost and "
                f"--sample N bound it")

    def fields(self):
        return dict(tier=self.tier, archives=self.n, bytes=self.bytes, dollars=self.dollars, hours=self.hours,
                    prices_as_of=cost.as_of())


def _choose(args, store, rows):
    """The archives to verify: all (or the IDs given), or ``--sample N`` of them at random; within
    ``--max-cost`` (a sample takes the archives it can afford; all of them must fit)."""
    if args.sample is not None:
        if args.sample < 1:
            raise UsageError("--sample N: give N of 1 or more")
        rows = random.SystemRandom().sample(rows, len(rows))
        if args.max_cost is None:
            rows = rows[:args.sample]
        else:
            chosen, spent = [], 0.0
            for row in rows:  # prices add up (per GB and per request), so each is priced alone
                if len(chosen) == args.sample:
                    break
                dollars = _Price(store, [row], args.tier).dollars
                if spent + dollars <= args.max_cost:
                    chosen.append(row)
                    spent += dollars
            if len(chosen) < min(args.sample, len(rows)):
                sys.stderr.write(f"zg-verify: note: --max-cost {cost.dollars(args.max_cost)} affords "
                                 f"{len(chosen)} of the {args.sample} archives asked for\n")
            rows = chosen
    price = _Price(store, rows, args.tier)
    if args.max_cost is not None and price.dollars > args.max_cost:
        raise UsageError(f"verifying {len(rows)} archives would cost about {cost.dollars(price.dollars)} to thaw "
                         f"({args.tier} tier, {cost.as_of()}), more than --max-cost {cost.dollars(args.max_cost)}: "
                         f"give --sample N (a random N within the budget), the Bulk tier, or a higher --max-cost")
    return rows, price


def _plan(args, dest, rows, price):
    if args.json:
        schema.dump("verify-plan", destination=dest, tier=args.tier, prices_as_of=cost.as_of(),
                    archives=[dict(id=r.id, name=r.name, size=r.size, storage_class=r.storage_class) for r in rows],
                    thaw_dollars=price.dollars, thaw_hours=price.hours, cold_archives=price.n)
        return 0
    for r in rows:
        print(f"would verify {r.id}  {r.name}  {cost.human_bytes(r.size)}  {r.storage_class or ''}".rstrip())
    print(f"{len(rows)} archives, {cost.human_bytes(sum(r.size for r in rows))}; "
          + (price.words() if price.cold else f"no thaw needed ({cost.as_of()})"))
    return 0


def main(argv=None):
    return run("zg-verify", body, argv, report=True, hooks=True)
