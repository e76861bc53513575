"""The JSON the commands write with --json: one schema per document, all versioned here.

Every document names its schema first: ``{"schema": "zfsglacier.backup-plan/1", ...}``.  Within a
version, fields are only ever added (a reader ignores what it does not know); a field removed,
renamed or changed in meaning makes the next version, and the number here changes with it.
Sizes are bytes, times are Unix seconds (UTC), money is US dollars from the price table whose
date ``prices_as_of`` gives.  The schemas are JSON Schema (2020-12); docs/json.md shows them, and
tests/test_plans.py checks every document a command writes against its schema.
"""

import json
import sys

from ..errors import UsageError

VERSION = 1

_INT, _NUM, _STR, _BOOL = {"type": "integer"}, {"type": "number"}, {"type": "string"}, {"type": "boolean"}
_OPT_INT, _OPT_STR, _OPT_NUM = ({"type": ["integer", "null"]}, {"type": ["string", "null"]},
                                {"type": ["number", "null"]})


def _object(required, optional=None):
    props = dict(required, **(optional or {}))
    return {"type": "object", "required": sorted(required), "properties": props}


def _doc(kind, required, optional=None):
    schema = _object(dict(required, schema={"const": f"zfsglacier.{kind}/{VERSION}"}), optional)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


_PRICES = {"prices_as_of": _STR}
_ARCHIVE = _object({"id": _STR, "name": _OPT_STR, "size": _INT, "storage_class": _OPT_STR})

_LISTED = _object({"id": _STR, "size": _INT, "created": _NUM, "storage_class": _OPT_STR})
_LISTING = {"destination": _STR, "archives": {"type": "array", "items": _LISTED},
            "incomplete_uploads": {"type": "array", "items": {"type": "object"}},
            "thaws": {"type": "array", "items": {"type": "object"}}}

SCHEMAS = {
    "ls": _doc("ls", _LISTING, {"holds": {"type": "array"}}),  # the catalog's record (zg-ls --json)
    "ls-remote": _doc("ls-remote", _LISTING),  # what the store lists (zg-ls --remote --json)
    "ls-hosts": _doc("ls-hosts", {"destination": _STR, "hosts": {"type": "array", "items": _object({
        "host": _OPT_STR, "destination": _STR, "archives": {"type": "array", "items": _LISTED}})}}),
    "backup-plan": _doc("backup-plan", {
        "destination": _STR, "storage_class": _STR, **_PRICES,
        "steps": {"type": "array", "items": _object({
            "dataset": _STR, "snapshot": _STR, "kind": {"enum": ["full", "incremental"]}, "base": _OPT_STR,
            "reason": _STR, "send_flags": {"type": "array", "items": _STR},
            "send_bytes": _OPT_INT, "estimated_by": _STR, "upper_bound": _BOOL,
            "archive_bytes": _OPT_INT, "monthly_dollars": _OPT_NUM,
        }, {"sample": _object({"source": _STR, "read": _INT, "stored": _INT, "whole": _BOOL})})},
        "up_to_date": {"type": "array", "items": _STR},
    }),
    "restore-plan": _doc("restore-plan", {
        "destination": _STR, "snapshot": _STR, "target": _STR, **_PRICES,
        "archives": {"type": "array", "items": _object({"id": _STR, "name": _OPT_STR, "size": _INT,
                                                        "storage_class": _OPT_STR,
                                                        "kind": {"enum": ["full", "incremental"]}})},
        "bytes": _INT,
        "retrieval": {"type": "array", "items": _object({"storage_class": _STR, "tier": _STR, "hours": _NUM,
                                                         "dollars": _NUM, "archives": _INT, "bytes": _INT})},
    }),
    "prune-plan": _doc("prune-plan", {
        "destination": _STR, "dataset": _OPT_STR, "rules": _STR, "now": _NUM, **_PRICES,
        "delete": {"type": "array", "items": _object(dict(_ARCHIVE["properties"], why=_STR,
                                                          early_deletion_dollars=_NUM))},
        "deferred": {"type": "array", "items": _object(dict(_ARCHIVE["properties"], until=_NUM,
                                                            early_deletion_dollars=_NUM))},
        "locked": {"type": "array", "items": _object(dict(_ARCHIVE["properties"], until=_NUM))},
        "keep": {"type": "array", "items": _object(dict(_ARCHIVE["properties"], why=_STR))},
        "monthly_saving_dollars": _NUM, "early_deletion_dollars": _NUM,
    }),
    "rm-plan": _doc("rm-plan", {
        "destination": _STR, **_PRICES,
        "archive": _ARCHIVE, "age_days": _NUM, "min_days": _NUM, "early_deletion_dollars": _NUM,
        "dependents": {"type": "array", "items": _STR},
    }),
    "verify": _doc("verify", {
        "destination": _STR, "with_key": _BOOL,
        "archives": {"type": "array", "items": _object({"id": _STR, "name": _OPT_STR,
                                                        "result": {"enum": ["ok", "FAIL", "MISSING"]},
                                                        "bytes": _OPT_INT, "detail": _OPT_STR})},
        "ok": _INT, "failed": _INT, "missing": _INT,
    }, {"thaw": _object({"tier": _STR, "archives": _INT, "bytes": _INT, "dollars": _NUM, "hours": _NUM,
                         **_PRICES})}),
    "doctor": _doc("doctor", {
        "destination": _STR, "capabilities": {"type": "object"},
        "checks": {"type": "array", "items": _object({"name": _STR, "status": {"enum": ["ok", "info", "warn", "fail"]},
                                                      "detail": _STR})},
    }),
    "inspect": _doc("inspect", {
        "format": _STR, "created": _NUM, "compression": _STR, "compression_level": {"type": ["integer", "null"]},
        "cipher": _STR, "chunk_size": _INT, "key_slots": {"type": "array", "items": _STR}, "header_size": _INT,
    }, {"signer": _STR, "snapshot": {"type": "object"}, "private": {"type": "object"}, "header_mac": _STR,
        "verified": _object({"plaintext_length": _INT, "plaintext_digest": _STR, "compressed_length": _INT})}),
    "status": _doc("status", {
        "now": _NUM, "breached": {"type": "array", "items": _STR}, "warnings": {"type": "array", "items": _STR},
        "destinations": {"type": "array", "items": _object({
            "destination": _STR, "archives": _INT, "bytes": _INT, "incomplete_uploads": _INT, "thaws_pending": _INT,
            "last_verify": {"type": ["object", "null"]}, "last_drill": {"type": ["object", "null"]},
            "datasets": {"type": "array", "items": _object({
                "dataset": _STR, "snapshot": _OPT_STR, "archive": _OPT_STR, "snapshot_time": _OPT_NUM,
                "age": _OPT_NUM, "rpo": _OPT_NUM, "breached": _BOOL, "chain_length": _INT, "full_time": _OPT_NUM,
                "broken": _OPT_STR, "last_verified": _OPT_NUM, "last_drill": _OPT_NUM,
                "held": {"type": "array", "items": _STR}, "next_full": _OPT_NUM})}})},
    }),
    "drill": _doc("drill", {
        "destination": _STR, "snapshot": _STR, "archives": {"type": "array", "items": _STR}, "bytes": _INT,
        "tier": _STR, "dollars": _NUM, **_PRICES, "result": {"enum": ["ok"]}, "checked": _STR,
        "compared": _OPT_STR,
    }),
    "migrate-plan": _doc("migrate-plan", {
        "source": _STR, "destination": _STR, **_PRICES,
        "archives": {"type": "array", "items": _ARCHIVE},
        "copied": {"type": "array", "items": _object({"source": _STR, "copy": _STR})},
        "unverifiable": {"type": "array", "items": _STR},
        "bytes": _INT, "tier": _STR, "retrieval_dollars": _NUM, "hours": _NUM, "put_dollars": _NUM,
        "monthly_source_dollars": _NUM, "monthly_target_dollars": _NUM,
    }),
    "verify-plan": _doc("verify-plan", {
        "destination": _STR, "tier": _STR, **_PRICES,
        "archives": {"type": "array", "items": _ARCHIVE},
        "thaw_dollars": _NUM, "thaw_hours": _NUM, "cold_archives": _INT,
    }),
}


def add_plan_option(p, kind):
    """--json on a command with --dry-run: its plan as the ``kind`` document."""
    p.add_argument("--json", action="store_true",
                   help=f"with --dry-run: the plan as JSON (schema zfsglacier.{kind}/{VERSION}, docs/json.md)")


def check_plan_option(args):
    if args.json and not args.dry_run:
        raise UsageError("--json goes with --dry-run (the plan)")


def document(kind, **fields):
    """The document of ``kind``, its schema named first."""
    assert kind in SCHEMAS, kind
    return {"schema": f"zfsglacier.{kind}/{VERSION}", **fields}


def dump(kind, **fields):
    """Write the document to stdout, one JSON text and a newline."""
    json.dump(document(kind, **fields), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
