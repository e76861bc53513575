"""Moving archives from one destination to another without decrypting them: the way out of the
legacy vault API (AWS took no new vault customers from December 2025) into an S3 Glacier class.

Each archive is thawed at the source (a vault retrieval job), read back through the source's own
verified path (tree hashes, the whole), and uploaded to the target with its public metadata
unchanged, where the upload's SHA-256 of the bytes must equal the one the catalog recorded when
the archive was first uploaded: the bytes that arrive are the bytes that left the backup host,
and no key is needed, since nothing is decrypted.  Only then is it recorded at the target, and
only then, with ``delete_source``, deleted at the source.  A copy is recognised by that SHA-256,
so a run that was stopped (or is waiting for its retrieval jobs) is simply run again.
"""

import hashlib
from dataclasses import dataclass

from ..errors import IntegrityError, UsageError
from . import cost
from .watch import NOBODY


@dataclass
class Plan:
    todo: list  # catalog rows at the source still to copy
    done: list  # (source row, target row) already copied
    unverifiable: list  # source rows with no SHA-256 recorded: a copy could not be proven the same

    @property
    def bytes(self):
        return sum(r.size for r in self.todo)


def plan(cat, src, dst):
    """What a migration from ``src`` to ``dst`` (destination URLs) has left to do."""
    copied = {r.sha256: r for r in cat.archives(dst) if r.sha256}
    todo, done, unverifiable = [], [], []
    for row in cat.archives(src):
        if not row.sha256:
            unverifiable.append(row)
        elif row.sha256 in copied:
            done.append((row, copied[row.sha256]))
        else:
            todo.append(row)
    return Plan(todo, done, unverifiable)


def estimate(rows, src_class, dst_class, tier):
    """What moving ``rows`` costs and takes, by the price table: the retrieval at ``tier``, the
    target's PUT requests, and the storage a month at either end."""
    size, n = sum(r.size for r in rows), len(rows)
    options = {o.tier: o for o in cost.retrieval_options(size, src_class, objects=n)}
    retrieval = options.get(tier) or options.get("immediate")
    if retrieval is None:
        raise UsageError(f"{src_class} has no {tier} retrieval tier (it has {', '.join(options)}): give --tier")
    parts = sum(max(1, -(-r.size // (64 << 20))) for r in rows)  # multipart uploads: a request per part
    return dict(archives=n, bytes=size, tier=retrieval.tier, retrieval_dollars=retrieval.dollars,
                hours=retrieval.hours, put_dollars=cost.put_cost(parts + n, dst_class),
                monthly_source_dollars=cost.monthly_storage(size, src_class, objects=n),
                monthly_target_dollars=cost.monthly_storage(size, dst_class, objects=n))


def copy(src_store, dst_store, row, *, jobs=4, watch=NOBODY):
    """Copy one archive: read verified from the source, upload to the target; returns the
    target's ArchiveInfo once the bytes are proven to be the ones first uploaded."""
    digest = hashlib.sha256()
    reader = src_store.open_read(row.id, jobs=jobs, recorded=row)
    watch.begin(f"{row.name}", row.size)
    try:
        with dst_store.open_upload(dict(row.public), expected_size=row.size, jobs=jobs) as up:
            for piece in reader.pieces():
                digest.update(piece)
                up.write(piece)
                watch.advance(len(piece))
            if digest.hexdigest() != row.sha256:
                raise IntegrityError(f"{row.id}: the source's bytes do not match the SHA-256 recorded at upload: "
                                     f"not copied")
            info = up.commit()
    finally:
        reader.close()
        watch.end()
    if info.sha256 != row.sha256 or info.size != row.size:
        raise IntegrityError(f"{row.id}: the copy at {dst_store.url} is not the archive ({info.size} bytes, SHA-256 "
                             f"{info.sha256}): not recorded, the source kept")
    return info
