"""zg-doctor: probe a destination once, say what would hurt the backups, and record what its server
can do in the catalog, so that the other commands do not ask again (part listings, cold reads)."""

import json
import sys

from ..stores import Check
from ..stores.s3_policy import ROLES
from . import schema
from .common import parser, run
from .storeargs import add_store_options, catalog, open_dest

MARK = {"ok": "ok  ", "info": "info", "warn": "WARN", "fail": "FAIL"}
EXAMPLES = [
    ("zg-doctor offsite", "a configured destination: bucket, clock, lock, lifecycle, classes..."),
    ("zg-doctor s3://backups/zfs --json", "the findings as JSON, for a script or a monitoring check"),
    ("zg-doctor offsite --policy backup > backup.json",
     "the IAM policy of the backup host's credentials (then: aws iam put-user-policy --user-name zg-backup "
     "--policy-name zg-backup --policy-document file://backup.json)"),
]
NOTES = """roles (--policy): backup   zg-backup, zg-upload: writes new objects only, never reads or deletes one
                  restore  zg-restore, zg-fetch, zg-verify, zg-catalog rebuild
                  prune    zg-prune, zg-rm: deletes, never reads an archive's bytes
                  admin    all of these, zg-doctor's bucket checks, zg-rm --bypass-governance

exit: 0 when nothing failed (warnings included), 10 when the destination cannot be used as configured."""


def build_parser():
    p = parser("zg-doctor", "Probe DEST once: credentials, bucket or vault, clock skew, versioning, Object Lock, "
                            "lifecycle rules over zfsglacier's objects, storage classes, checksums, the part limit, "
                            "part listings and cold reads. Writes nothing that stays (an upload started and "
                            "aborted, a one-byte object deleted), thaws nothing; records what it found in the "
                            "catalog for the other commands.", examples=EXAMPLES, notes=NOTES)
    add_store_options(p)
    p.add_argument("--policy", metavar="ROLE", choices=ROLES,
                   help="print the IAM policy of ROLE (backup, restore, prune, admin) for DEST and probe nothing")
    p.add_argument("--json", action="store_true", help="the findings as JSON: {destination, checks: [{name, status, "
                                                       "detail}], capabilities} (schema zfsglacier.doctor/1)")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    config, store, dest = open_dest(args)
    if args.policy:
        json.dump(store.policy(args.policy), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    checks: list[Check] = store.doctor()
    failed = any(c.status == "fail" for c in checks)
    if not failed:
        with catalog(args, config) as cat:
            cat.probed(dest, store.capabilities())
    if args.json:
        schema.dump("doctor", destination=dest, checks=[vars(c) for c in checks], capabilities=store.capabilities())
    else:
        print(f"{dest}:")
        for c in checks:
            print(f"  {MARK.get(c.status, c.status)}  {c.name}: {c.detail}")
    return 10 if failed else 0


def main(argv=None):
    return run("zg-doctor", body, argv, report=True)
