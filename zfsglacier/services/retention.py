"""Retention: which archives a destination keeps, which can go, and which should wait.

Pure functions over catalog rows (no store, no clock: ``now`` is an argument), so that what
``zg-prune --dry-run`` prints is exactly what a real run deletes.

1. Rules pick SNAPSHOTS, per dataset (rows without a dataset name: per chain, i.e. per full they
   descend from), by each snapshot's creation time (fallback: upload time), restic-style:
   ``last N`` keeps the N newest; ``hourly/daily/weekly/monthly/yearly N`` keeps the newest
   snapshot of each of the N most recent periods that have one (UTC, ISO weeks).  Rules count
   independently; a snapshot matched by several is kept once, with every reason.
2. The kept set is closed under chain ancestry: every archive on ``chains.chain_to`` of a kept
   snapshot stays ("needed by ..."), so a full is never deleted under a kept incremental.  A
   broken chain keeps every ancestor that exists, with a warning.
3. An archive younger than its class's minimum storage duration (GLACIER/VAULT 90 d,
   DEEP_ARCHIVE 180 d) is billed to the minimum anyway: it is deferred, not deleted, unless
   ``delete_early``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from ..catalog import chains as chainmod
from . import cost
from ..errors import NotFoundError, UsageError

PERIODS = ("hourly", "daily", "weekly", "monthly", "yearly")
RULE_NAMES = ("last",) + PERIODS


@dataclass(frozen=True)
class Rules:
    """How many snapshots each rule keeps; 0 means the rule is not used."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def __post_init__(self):
        for name in RULE_NAMES:
            n = getattr(self, name)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise UsageError(f"--keep-{name} {n!r}: must be a whole number, 0 or more")

    @property
    def empty(self) -> bool:
        return not any(getattr(self, n) for n in RULE_NAMES)

    def describe(self) -> str:
        return ", ".join(f"{n} {getattr(self, n)}" for n in RULE_NAMES if getattr(self, n)) or "none"

    def require(self) -> None:
        """Refuse an empty policy: it would delete everything."""
        if self.empty:
            raise UsageError("prune without any keep rule would delete everything: give at least one of "
                             "--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, "
                             "--keep-yearly (greater than 0)")


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def period_of(rule: str, ts: float) -> str:
    """The calendar period (UTC) a time falls in, as the label printed in reasons."""
    d = _utc(ts)
    if rule == "hourly":
        return d.strftime("%Y-%m-%dT%H")
    if rule == "daily":
        return d.strftime("%Y-%m-%d")
    if rule == "weekly":
        year, week, _ = d.isocalendar()
        return f"{year}-W{week:02d}"
    if rule == "monthly":
        return d.strftime("%Y-%m")
    if rule == "yearly":
        return d.strftime("%Y")
    raise ValueError(rule)


def row_time(row) -> float:
    """When a snapshot was taken: its creation time, else when its archive was uploaded."""
    return float(row.snap_created if row.snap_created is not None else row.uploaded)


@dataclass(eq=False)
class Snapshot:
    """One snapshot of one group and the archives that hold it (hashable by identity:
    ArchiveRow is a mutable dataclass, so it cannot key a dict)."""

    group: str
    toguid: Optional[int]
    time: float
    archives: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.archives[0].name if self.archives else f"guid:{self.toguid}"


def select_keep(snapshots, rules: Rules, now: float) -> dict:
    """snapshot -> reasons it is kept, for ONE group of snapshots (anything with ``.time``).

    Periods are calendar periods of the snapshots' own times, as in restic and borg, so ``now``
    does not move them; it is taken for symmetry with ``plan`` (and future age-based rules).
    """
    rules.require()
    # ZFS keeps creation times in whole seconds: of snapshots taken in one second the one archived
    # later is the newer (an incremental is uploaded after its base), never a guid's chance order.
    ordered = sorted(snapshots, key=lambda s: (s.time, min((a.uploaded for a in getattr(s, "archives", ())), default=0),
                                               getattr(s, "toguid", None) or 0), reverse=True)
    kept: dict = {}
    for i, s in enumerate(ordered[:rules.last]):
        kept.setdefault(s, []).append(f"last {i + 1}/{rules.last}")
    for rule in PERIODS:
        n = getattr(rules, rule)
        if not n:
            continue
        seen = []
        for s in ordered:
            p = period_of(rule, s.time)
            if seen and seen[-1] == p:
                continue  # an older snapshot of a period already represented
            seen.append(p)
            if len(seen) > n:
                break
            kept.setdefault(s, []).append(f"{rule} {p}")
    return kept


@dataclass
class Decision:
    """What happens to one archive, and why (``reasons`` are the words printed)."""

    archive: object
    action: str                  # keep | delete | defer | locked
    reasons: list
    cls: str                     # price-table class
    until: Optional[float] = None    # defer: when deleting stops costing extra; locked: the retain-until
    early_cost: float = 0.0      # dollars still billed if deleted now
    days_short: float = 0.0      # days short of the class's minimum storage duration

    @property
    def id(self) -> str:
        return self.archive.id

    @property
    def monthly(self) -> float:
        return cost.monthly_storage(self.archive.size, self.cls)


@dataclass
class Plan:
    keep: list
    delete: list
    deferred: list
    warnings: list
    locked: list = field(default_factory=list)  # no rule keeps them; the server's Object Lock still does

    @property
    def monthly_saving(self) -> float:
        return sum(d.monthly for d in self.delete)

    @property
    def deferred_saving(self) -> float:
        return sum(d.monthly for d in self.deferred)

    @property
    def early_cost(self) -> float:
        return sum(d.early_cost for d in self.delete)

    def execution_order(self) -> list:
        """Deletions newest first: an interrupted run never leaves an incremental whose parent
        is gone while it stays."""
        return sorted(self.delete, key=lambda d: (row_time(d.archive), d.archive.uploaded), reverse=True)


def _index(archives) -> dict:
    """toguid -> archives holding it."""
    idx: dict = {}
    for a in archives:
        if a.toguid is not None:
            idx.setdefault(a.toguid, []).append(a)
    return idx


def _ancestors(archive, idx) -> list:
    """Every archive reachable backwards through fromguid (all candidates, for broken chains)."""
    out, todo, seen = [], [archive], {archive.id}
    while todo:
        a = todo.pop()
        if not a.fromguid:
            continue
        for p in idx.get(a.fromguid, []):
            if p.id not in seen:
                seen.add(p.id)
                out.append(p)
                todo.append(p)
    return out


def lock_shortfalls(archives, now: float) -> dict:
    """Object Lock sized to chains: archive id -> the retain-until it needs and lacks.  An archive
    must stay locked as long as any archive that depends on it (all of its ancestors through
    fromguid, every candidate where a chain is ambiguous): else a lock on the newest incremental
    protects bytes that cannot be restored once its full is deleted (kopia#1067).  A lock already
    past asks nothing (a retain-until in the past is no lock, and servers refuse it)."""
    idx = _index(archives)
    need: dict = {}
    for a in archives:
        if not a.locked_until or a.locked_until <= now:
            continue
        for p in _ancestors(a, idx):
            if (p.locked_until or 0) < a.locked_until and need.get(p.id, 0) < a.locked_until:
                need[p.id] = a.locked_until
    return need


def _group_of(row, idx) -> str:
    """The retention group: the dataset name, else the dataset named anywhere up the chain,
    else the chain's full (or, broken, the guid it misses)."""
    if row.dataset:
        return f"dataset {row.dataset}"
    if row.toguid is None:
        return "archives without snapshot identity"
    ups = _ancestors(row, idx)
    named = [a.dataset for a in ups if a.dataset]
    if named:
        return f"dataset {named[0]}"
    fulls = sorted((a for a in [row] + ups if not a.fromguid), key=lambda a: (a.uploaded, a.id))
    if fulls:
        return f"chain of {fulls[0].id}"
    missing = sorted({a.fromguid for a in [row] + ups if a.fromguid not in idx})
    return f"broken chain from guid {missing[0] if missing else row.fromguid}"


def group_snapshots(archives, idx=None) -> dict:
    """group name -> [Snapshot], archives of one snapshot (same toguid) merged."""
    idx = _index(archives) if idx is None else idx
    groups: dict = {}
    by_key: dict = {}
    for a in sorted(archives, key=lambda a: (row_time(a), a.uploaded, a.id)):
        g = _group_of(a, idx)
        key = (g, a.toguid if a.toguid is not None else f"id:{a.id}")
        snap = by_key.get(key)
        if snap is None:
            snap = by_key[key] = Snapshot(g, a.toguid, row_time(a))
            groups.setdefault(g, []).append(snap)
        elif a.snap_created is not None:
            snap.time = float(a.snap_created)
        snap.archives.append(a)
    return groups


def _in_scope(group: str, dataset: Optional[str]) -> bool:
    if dataset is None:
        return True
    name = group[len("dataset "):] if group.startswith("dataset ") else None
    return name is not None and (name == dataset or name.startswith(dataset + "/"))


def _few(ids, n=1) -> str:
    ids = list(dict.fromkeys(ids))
    more = f" (+{len(ids) - n} more)" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


def plan(archives, rules: Rules, now: float,
         storage_class: Union[str, Callable[[object], str]] = "LOCAL",
         delete_early: bool = False, dataset: Optional[str] = None) -> Plan:
    """Decide every archive of ``archives`` (one destination's live catalog rows).

    ``storage_class`` is a price-table class, or a function row -> class.  ``dataset`` limits
    what may be deleted to that dataset and its children; chains are still resolved over all
    ``archives`` (a rename can make one chain span two names).
    """
    rules.require()
    archives = list(archives)
    cls_of = storage_class if callable(storage_class) else (lambda _row, c=storage_class: c)
    idx = _index(archives)
    groups = group_snapshots(archives, idx)

    reasons: dict = {}      # archive id -> reasons to keep
    needed_by: dict = {}    # archive id -> kept archives whose chain it is on
    duplicate_of: dict = {}  # archive id -> (snapshot, chain ids) for a kept snapshot's spare archive
    warnings: list = []
    scope: list = []
    outside: list = []
    for g, snaps in groups.items():
        if not _in_scope(g, dataset):
            outside.extend(a for s in snaps for a in s.archives)
            continue
        scope.extend(a for s in snaps for a in s.archives)
        for snap, why in select_keep(snaps, rules, now).items():
            if snap.toguid is None:
                for a in snap.archives:
                    reasons.setdefault(a.id, []).extend(why)
                continue
            # Only ancestors can be on its chain: a small list keeps chain_to's index cheap.
            candidates = {c.id: c for a in snap.archives for c in [a] + _ancestors(a, idx)}
            try:
                chain = chainmod.chain_to(list(candidates.values()), snap.toguid, label=snap.name).archives
            except NotFoundError as err:
                # Unrestorable as it stands, but what exists may be completed later: keep all of it.
                kept_ids = set()
                for a in snap.archives:
                    reasons.setdefault(a.id, []).extend(why)
                    kept_ids.add(a.id)
                    for p in _ancestors(a, idx):
                        needed_by.setdefault(p.id, []).append(a)
                        kept_ids.add(p.id)
                warnings.append(f"{err}; keeping the {len(kept_ids)} archive(s) of it that exist")
                continue
            target = chain[-1]
            reasons.setdefault(target.id, []).extend(why)
            for a in chain[:-1]:
                needed_by.setdefault(a.id, []).append(target)
            on_chain = {a.id for a in chain}
            for a in snap.archives:
                if a.id not in on_chain:
                    duplicate_of[a.id] = (snap, [c.id for c in chain])

    # Archives outside the DATASET filter are never deleted, so every ancestor they have stays.
    seen = {a.id for a in outside}
    todo = [(a, a) for a in outside]
    while todo:
        a, user = todo.pop()
        for p in idx.get(a.fromguid, []) if a.fromguid else []:
            if p.id not in seen:
                seen.add(p.id)
                needed_by.setdefault(p.id, []).append(user)
                todo.append((p, user))

    keep, delete, deferred, locked = [], [], [], []
    for a in sorted(scope, key=lambda a: (row_time(a), a.uploaded, a.id)):
        cls = cls_of(a)
        why = list(reasons.get(a.id, []))
        if a.id in needed_by:
            users = sorted(needed_by[a.id], key=lambda u: (row_time(u), u.uploaded, u.id))
            why.append(f"needed by {_few([u.id for u in users])}")
        if why:
            keep.append(Decision(a, "keep", why, cls))
            continue
        if a.id in duplicate_of:
            snap, ids = duplicate_of[a.id]
            why = [f"another copy of kept {snap.name}, restorable via {_few(ids)}"]
        else:
            why = ["no rule keeps it"]
        days_short, charge = 0.0, 0.0
        if cost.min_days(cls) > 0:  # early_deletion alone would count an upload "after now" as short
            days_short, charge = cost.early_deletion(a.size, cls, max(0.0, now - a.uploaded))
        d = Decision(a, "delete", why, cls, early_cost=charge, days_short=days_short)
        if a.locked_until and a.locked_until > now:  # the server refuses until then: say so, ask nothing
            d.action, d.until = "locked", a.locked_until
            locked.append(d)
            continue
        if days_short > 0:
            d.until = a.uploaded + cost.min_days(cls) * cost.DAY
            if not delete_early:
                d.action = "defer"
                deferred.append(d)
                continue
        delete.append(d)
    return Plan(keep, delete, deferred, warnings, locked)
