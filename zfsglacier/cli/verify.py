"""zg-verify: read archives back from a destination and check them end to end.

With --key, every chunk is authenticated and the trailer's length and SHA-256 are checked (the
same work as a restore, minus `zfs receive`); without a key, the store's checksums, the catalog's
SHA-256 and the archive's footer are checked.  Cold archives are thawed first (this costs money:
see `zg-restore --dry-run` for the per-tier price).

Every archive gets one line, `ok`, `FAIL` or `MISSING`, and the run goes on past each failure: an
archive deleted behind the tool's back is reported (and marked missing in the catalog, which
breaks the chains through it) while the rest are still checked.  Then a summary line.
"""

import hashlib
import sys
import time

from ..format import archive
from ..services import thaw
from ..errors import CorruptArchiveError, IntegrityError, NotFoundError, UsageError, ZgError
from ..plumbing.pipes import IO_SIZE
from ..format.header import FOOTER, footer_ok
from .common import parser, run
from .keyargs import add_key_options, add_signer_option, given, identities, signers
from .progress import Progress
from .storeargs import add_store_options, add_thaw_options, catalog, jobs, open_dest, thaw_policy


class _Hashing:
    """Pass-through reader that hashes and remembers the last footer-sized bytes."""

    def __init__(self, raw):
        self.raw, self.digest, self.length, self.tail = raw, hashlib.sha256(), 0, b""

    def read(self, n=-1):
        data = self.raw.read(n)
        self.digest.update(data)
        self.length += len(data)
        self.tail = (self.tail + data[-FOOTER.size:])[-FOOTER.size:]
        return data

    def close(self):
        self.raw.close()


def verify_one(store, row, idents, n_jobs, signers=()):
    reader = _Hashing(store.open_read(row.id, jobs=n_jobs, recorded=row))
    try:
        if idents:
            archive.decrypt(reader, None, idents, signers=signers)
        else:
            while reader.read(IO_SIZE):
                pass
            if row.meta.format and not footer_ok(reader.tail, reader.length):
                raise CorruptArchiveError(f"{row.id}: archive is truncated (no valid footer)")
    finally:
        reader.close()
    if row.sha256 and reader.digest.hexdigest() != row.sha256:
        raise IntegrityError(f"{row.id}: SHA-256 differs from the one recorded at upload")
    return reader.length


def body(argv):
    p = parser("zg-verify", "Fetch archives of DEST and check them end to end (all, or the IDs given).")
    add_store_options(p)
    p.add_argument("ids", nargs="*", metavar="ID")
    add_key_options(p, "identity", why="also authenticate every chunk and the trailer")
    add_thaw_options(p)
    add_signer_option(p)
    args = p.parse_args(argv)
    config, store, dest = open_dest(args)
    idents = identities(args)[0] if given(args) else []
    required = signers(args, config)
    if required and not idents:
        raise UsageError("--signer needs --key: a signature is checked once the header is read with a key")
    bad, gone = 0, []
    with catalog(args, config, write=False, create=False) as cat:
        rows = [r for r in cat.archives(dest) if not args.ids or r.id in args.ids]
        unknown = set(args.ids) - {r.id for r in rows}
        if unknown:
            raise NotFoundError(f"not in the catalog for {dest}: {', '.join(sorted(unknown))}")
        progress = Progress("verify")

        by_id = {r.id: r for r in rows}

        def missing(archive_id, err):  # reported; the others are still checked
            row = by_id[archive_id]
            gone.append(row)
            cat.mark_missing(dest, row.id, time.time())
            print(f"MISSING {row.id}  {row.name}  {err}")

        thaw.thaw_all(store, dest, cat, [r.id for r in rows], thaw_policy(args), progress.say, on_missing=missing)
        for row in (r for r in rows if r not in gone):
            try:
                n = verify_one(store, row, idents, jobs(args, config), required)
                if row.missing:
                    cat.mark_present(dest, row.id)
                print(f"ok      {row.id}  {row.name}  {n} bytes" + ("" if idents else " (checksums only: no key)"))
            except NotFoundError as err:  # gone since the thaw check
                missing(row.id, err)
            except ZgError as err:
                bad += 1
                print(f"FAIL    {row.id}  {row.name}  {err}")
            sys.stdout.flush()
    summary = f"{len(rows) - bad - len(gone)} ok, {bad} failed, {len(gone)} missing, of {len(rows)} archives"
    if bad:
        raise IntegrityError(f"{summary}: see the FAIL lines")
    if gone:
        raise NotFoundError(f"{summary}: the missing ones are marked so in the catalog; chains through them "
                            f"are broken (`zg-ls DEST`)")
    print(summary)
    return 0


def main(argv=None):
    return run("zg-verify", body, argv)
