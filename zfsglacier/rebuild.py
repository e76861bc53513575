"""Rebuild the catalog of a destination from the destination alone.

Without a key: every archive with its public fields (sizes, guids, times), so chains and
incremental planning work.  With a key: also the names, from the header copy in each archive's
metadata (nothing to thaw) and from the newest encrypted catalog copy that zg-backup uploads.
"""

import base64
import io
import json

from . import archive
from .backup import CATALOG_KIND
from .errors import ZgError
from .format import read_header
from .keys import open_header


def names_from_header_copy(info, identities):
    copy = info.metadata.get("zg-header")
    if not copy or not identities:
        return None
    try:
        header = read_header(io.BytesIO(base64.b64decode(copy)))
        private = archive.read_private_metadata(header, open_header(header, identities))
    except (ZgError, ValueError):
        return None
    name = private.get("snapshot")
    return tuple(name.split("@", 1)) if name and "@" in name else None


def names_from_catalog_copy(store, copies, identities):
    """id -> (dataset, snapshot) from the newest readable catalog copy."""
    for info in sorted(copies, key=lambda a: -a.created):
        try:
            out = io.BytesIO()
            archive.decrypt(store.open_read(info.id), out, identities)
            rows = json.loads(out.getvalue())["archives"]
        except (ZgError, ValueError, KeyError):
            continue
        return {r["id"]: (r["dataset"], r["snapshot"]) for r in rows if r.get("dataset")}
    return {}


def rebuild(store, cat, dest, identities=()):
    """Record every archive of ``store`` in ``cat``; returns (archives, named)."""
    listing = list(store.list())
    copies = [a for a in listing if a.metadata.get("zg-kind") == CATALOG_KIND]
    archives = [a for a in listing if a.metadata.get("zg-kind") != CATALOG_KIND]
    from_copy = names_from_catalog_copy(store, copies, identities) if identities and copies else {}
    named = 0
    for info in archives:
        names = names_from_header_copy(info, identities) or from_copy.get(info.id)
        cat.record(dest, info, dataset=names[0] if names else None, snapshot=names[1] if names else None,
                   uploaded=info.created)
        named += bool(names)
    return len(archives), named
