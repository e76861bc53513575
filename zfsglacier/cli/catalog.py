"""zg-catalog: manage the local catalog (rebuild it from a destination, back it up there)."""

import sys
import time

from ..services import backup, rebuild
from ..catalog.db import Catalog, catalog_path
from ..errors import DamagedCatalogError, IntegrityError, NotFoundError, RestorePendingError
from ..format.metadata import printable
from .common import parser, run
from .keyargs import (add_key_options, add_sign_option, add_signer_option, given, identities, recipients, signers,
                      signing_key)
from .storeargs import add_store_options, catalog, catalog_copy_store, elsewhere, jobs, open_dest


EXAMPLES = [
    ('zg-catalog rebuild offsite --key ~/.zg/offsite.key',
     'a lost catalog, rebuilt from the store (names need the key)'),
    ('zg-catalog check offsite',
     "compare the catalog with the store's listing; mark what is gone"),
    ('zg-catalog backup offsite --key ~/.zg/offsite.pub',
     'an encrypted copy of the catalog, kept in the destination'),
]


def build_parser():
    p = parser("zg-catalog", "Rebuild the local catalog from a destination, or upload an encrypted copy of it.", examples=EXAMPLES)
    sub = p.add_subparsers(dest="cmd", required=True)
    rb = sub.add_parser("rebuild", help="read every archive's public fields (and, with --key, names) from DEST")
    add_store_options(rb)
    add_key_options(rb, "identity", why="also recover dataset and snapshot names")
    add_signer_option(rb)
    ck = sub.add_parser("check", help="compare the catalog with a listing of DEST (no thaw, no data read) and "
                                      "mark archives the store no longer has as missing")
    add_store_options(ck)
    bk = sub.add_parser("backup", help="upload the catalog's rows for DEST to DEST, encrypted to --key")
    add_store_options(bk)
    add_key_options(bk, "recipient")
    add_sign_option(bk)
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    config, store, dest = open_dest(args)
    with open_for(args, config) as cat:
        if args.cmd == "rebuild":
            idents = identities(args)[0] if given(args) else []
            report = rebuild.rebuild(store, cat, dest, idents, signers(args, config))
            print(f"{dest}: {report.archives} archives recorded in {cat.path}, {report.named} with names, "
                  f"{report.verified} with authenticated identity"
                  + ("" if idents else " (give --key to recover names and check identities)"))
            sys.stdout.flush()
            if not report.archives:
                other = elsewhere(args, config, store)
                if other:
                    warn(other)
            explain_rebuild(report)
        elif args.cmd == "check":
            print_check(dest, rebuild.check(store, cat, dest), cat)
        else:
            info = backup.upload_catalog(catalog_copy_store(args, config, store), cat, dest, recipients(args),
                                         jobs=jobs(args, config), sign=signing_key(args, config))
            print(info.id)
    sys.stdout.flush()
    return 0


def open_for(args, config):
    """The catalog; for a rebuild, a damaged or foreign one is moved aside and replaced."""
    if args.cmd != "rebuild":
        return catalog(args, config, write=args.cmd != "check", create=False)
    try:
        return catalog(args, config)
    except DamagedCatalogError:
        cat, aside = Catalog.replace(catalog_path(args.catalog, config))
        warn(f"the catalog was damaged or not a catalog: moved it to {aside}; rebuilding a new one")
        return cat


def print_check(dest, result, cat):
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result.as_of))
    print(f"{dest}: {result.present + len(result.missing)} archives in the catalog, {result.present} of them "
          f"listed by the store (as of {when})")
    for row in result.missing:
        print(f"MISSING {row.id}  {row.name}  uploaded {time.strftime('%Y-%m-%d', time.gmtime(row.uploaded))}")
    for row in result.back:
        print(f"back    {row.id}  {row.name}  (marked missing before, listed again)")
    for archive_id in result.unknown:
        print(f"unknown {printable(archive_id)}  in the store, not in the catalog (`zg-catalog rebuild {dest}` "
              f"adds it)")
    sys.stdout.flush()
    if result.missing:
        how = "" if not cat.readonly else " (the catalog is read-only: not recorded)"
        raise NotFoundError(f"{len(result.missing)} archives of the catalog are not in the store (hidden or "
                            f"deleted there); they are marked missing{how}, and chains through them are broken")


def explain_rebuild(report):
    """Warnings for what the store and the authenticated bytes disagree on; missing archives fail."""
    for archive_id, why in report.skipped[:20]:
        warn(f"skipped object {archive_id}: {why}")
    if report.disagree:
        warn(f"{len(report.disagree)} archives carry public guids that their authenticated header does not "
             f"(recorded from the header; the store's metadata was changed): {', '.join(report.disagree[:5])}")
    if report.copy_pending:
        raise RestorePendingError(f"the newest catalog copy ({report.copy_pending}) is being thawed: until it is "
                                  f"readable, names of archives without a header copy and archives hidden from "
                                  f"the store cannot be checked; run the same command again later")
    if report.missing:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.copy_written or 0))
        names = ", ".join(f"{name} ({i})" for i, name in report.missing[:5])
        raise IntegrityError(f"{len(report.missing)} archives listed by the catalog or its newest copy ({when}) "
                             f"are not in the store: hidden or deleted there: {names}; they are recorded as "
                             f"missing")


def warn(message):
    sys.stderr.write(f"zg-catalog: warning: {message}\n")


def main(argv=None):
    return run("zg-catalog", body, argv, report=True)
