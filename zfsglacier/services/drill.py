"""Restore drills: an archive chain picked at random within a budget, read back end to end (or
received into a scratch dataset and compared with its source), the result noted for zg-status.

The pick is uniform over every snapshot whose whole chain is restorable and whose thaw fits the
budget; a drill that has to wait for a thaw notes its pick ("pending"), so that the next run
finishes it instead of paying for another.
"""

import hashlib
import os
import random
from dataclasses import dataclass

from ..catalog import chains
from ..errors import NotFoundError, UsageError

PENDING = "pending"
PENDING_DAYS = 30  # a pick older than this is dropped: its thawed copies have expired by then


@dataclass
class Pick:
    chain: object  # chains.Chain
    dollars: float  # the thaw's price by the table

    @property
    def target(self):
        return self.chain.target


def pick(archives, price, *, budget=None, datasets=None, rng=None):
    """A random restorable chain of ``archives`` (of ``datasets``, their children too) whose thaw
    ``price(chain)`` is within ``budget`` dollars; UsageError naming the cheapest when none is."""
    rng = rng or random.SystemRandom()

    def wanted(a):
        return not datasets or any(a.dataset == d or (a.dataset or "").startswith(d + "/") for d in datasets)

    candidates, cheapest = [], None
    for a in archives:
        if a.toguid is None or a.missing or not wanted(a):
            continue
        try:
            chain = chains.chain_to(archives, a.toguid, a.name)
        except NotFoundError:
            continue  # not restorable: zg-status reports that, a drill cannot test it
        if chain.target is not a:
            continue  # the same snapshot in another archive: counted once, as its chain's
        dollars = price(chain)
        cheapest = dollars if cheapest is None else min(cheapest, dollars)
        if budget is None or dollars <= budget:
            candidates.append(Pick(chain, dollars))
    if not candidates:
        if cheapest is None:
            raise NotFoundError("no restorable archive to drill" + (f" of {', '.join(datasets)}" if datasets else ""))
        raise UsageError(f"the cheapest drill costs about ${cheapest:.4f} to thaw, more than --max-cost "
                         f"${budget:g}: raise it, or use a cheaper tier (--tier Bulk)")
    return rng.choice(candidates)


def pending(cat, dest, archives, now):
    """The chain an unfinished drill picked (noted within PENDING_DAYS), or None."""
    notes = [c for c in cat.checks(dest, "drill") if c["result"] == PENDING and now - c["finished"] < PENDING_DAYS * 86400]
    if not notes:
        return None
    target = notes[-1]["detail"]
    row = next((a for a in archives if a.id == target), None)
    if row is None:
        return None
    try:
        return chains.chain_to(archives, row.toguid, row.name)
    except NotFoundError:
        return None


def note_pending(cat, dest, chain):
    cat.forget_checks(dest, "drill", PENDING)
    cat.checked(dest, chain.target.id, "drill", PENDING, chain.target.id)


def tree_digest(root):
    """{relative path: (kind, size, SHA-256)} of every file, directory and link under ``root``
    (``.zfs`` left out); a scratch restore and its source compare equal by this."""
    out = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not (top == root and d == ".zfs"))
        for name in dirs:
            rel = os.path.relpath(os.path.join(top, name), root)
            out[rel] = ("dir", 0, "")
        for name in sorted(files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", 0, os.readlink(path))
                continue
            digest, size = hashlib.sha256(), 0
            with open(path, "rb") as f:
                while piece := f.read(1 << 20):
                    digest.update(piece)
                    size += len(piece)
            out[rel] = ("file", size, digest.hexdigest())
    return out


def compare(source, restored):
    """(files compared, the differences in words, at most 5) between two tree_digest()s."""
    differences = []
    for rel in sorted(set(source) | set(restored)):
        if rel not in restored:
            differences.append(f"{rel}: missing from the restore")
        elif rel not in source:
            differences.append(f"{rel}: in the restore, not in the source")
        elif source[rel] != restored[rel]:
            differences.append(f"{rel}: differs")
    return sum(1 for v in source.values() if v[0] == "file"), differences[:5]
