"""Snapshot chains: which archives restore which snapshot, decided by guids, never by names.

An archive of a full stream starts a chain; an incremental archive (fromguid F -> toguid T)
continues the chain that reaches F.  Names can be renamed on the host and are not public; guids
are in every archive's public header, so chains can be worked out without the secret key.

An archive the store no longer has (``missing`` set by a check, a verify or a rebuild) is on no
chain: what goes through it is broken, for restore, for the next backup's base and for prune.
"""

import time
from dataclasses import dataclass

from ..errors import NotFoundError


@dataclass
class Chain:
    """Archives in the order they must be received: a full, then incrementals."""

    archives: list

    @property
    def size(self):
        return sum(a.size for a in self.archives)

    @property
    def target(self):
        return self.archives[-1]


def _missing(a):
    return getattr(a, "missing", None)


def by_toguid(archives):
    """toguid -> archives holding a stream to that snapshot (newest upload first); missing ones left out."""
    index = {}
    for a in sorted(archives, key=lambda a: -a.uploaded):
        if a.toguid is not None and not _missing(a):
            index.setdefault(a.toguid, []).append(a)
    return index


def _gone(archives, guid):
    """' (archive ID, NAME, is missing from the store since DATE)' when a missing archive held it."""
    gone = [a for a in archives if a.toguid == guid and _missing(a)]
    if not gone:
        return ""
    a = gone[0]
    return (f" (archive {a.id}, {a.name}, held it but is missing from the store, found so on "
            f"{time.strftime('%Y-%m-%d', time.gmtime(a.missing))}: hidden or deleted there)")


def chain_to(archives, toguid, label=None):
    """The shortest chain of ``archives`` that ends at snapshot ``toguid``.

    Raises NotFoundError naming the missing link when none is complete.
    """
    index = by_toguid(archives)
    label = label or f"guid {toguid}"
    if toguid not in index:
        raise NotFoundError(f"no archive holds {label}{_gone(archives, toguid)}")
    best, missing = None, None
    # Depth-first over candidates; chains are short (a full every N backups), so this stays small.
    stack = [(a, [a]) for a in index[toguid]]
    seen = set()
    while stack:
        arch, path = stack.pop()
        if not arch.fromguid:
            if best is None or len(path) < len(best):
                best = path
            continue
        if (arch.fromguid, len(path)) in seen or (best and len(path) >= len(best)):
            continue
        seen.add((arch.fromguid, len(path)))
        parents = index.get(arch.fromguid)
        if not parents:
            missing = missing or (arch, arch.fromguid)
            continue
        stack.extend((p, path + [p]) for p in parents if all(p is not q for q in path))
    if best is None:
        arch, need = missing
        raise NotFoundError(f"the chain to {label} is broken: no archive holds the snapshot with guid {need}, "
                            f"on which {arch.id} depends{_gone(archives, need)}")
    return Chain(list(reversed(best)))


def dependents(archives, archive):
    """Archives that need ``archive`` (directly or through others) to be restorable."""
    children = {}
    for a in archives:
        if a.fromguid:
            children.setdefault(a.fromguid, []).append(a)
    out, seen, todo = [], {id(archive)}, [archive.toguid]
    while todo:
        g = todo.pop()
        for c in children.get(g, []):
            if id(c) not in seen:  # identity: two rows may hold equal fields
                seen.add(id(c))
                out.append(c)
                todo.append(c.toguid)
    return out


def chains(archives):
    """Every chain head-to-leaf, for display: list of lists, each starting with a full."""
    children = {}
    for a in archives:
        if a.fromguid:
            children.setdefault(a.fromguid, []).append(a)
    result = []

    def walk(a, path):
        kids = sorted(children.get(a.toguid, []), key=lambda x: (x.snap_created or 0, x.uploaded))
        if not kids:
            result.append(path)
        for k in kids:
            if all(k is not q for q in path):
                walk(k, path + [k])

    for full in sorted((a for a in archives if not a.fromguid and a.toguid is not None),
                       key=lambda x: (x.snap_created or 0, x.uploaded)):
        walk(full, [full])
    return result
