"""What zg-status answers: is every dataset backed up recently enough, and when was anything last
read back?  From the catalog alone (and the local ZFS for holds): no store is asked, nothing is
thawed or paid for, so a monitoring check can run it every few minutes.

A dataset's *last good backup* is its newest snapshot whose whole chain (full and incrementals) is
in the catalog and not missing from the store: an archive that cannot be restored is no backup.
Its age is counted from the snapshot's creation (the data's age, which is what a recovery point
objective is about), not from the upload.
"""

from dataclasses import dataclass, field
from typing import Optional

from ..catalog import chains
from ..errors import NotFoundError, ZgError
from . import backup


@dataclass
class DatasetStatus:
    dataset: str
    snapshot: Optional[str]  # the last good backup's snapshot (None: none is restorable)
    archive: Optional[str]  # and the archive that holds it
    snapshot_time: Optional[float]
    age: Optional[float]  # seconds since that snapshot was taken
    rpo: Optional[float]  # seconds; None: no RPO set
    chain_length: int = 0  # archives a restore of it receives (the full and the incrementals)
    full_time: Optional[float] = None  # when the chain's full was uploaded
    broken: Optional[str] = None  # why a newer archive of it cannot be restored, if one cannot
    last_verified: Optional[float] = None  # the last time an archive of it was read back and passed
    last_drill: Optional[float] = None
    held: list = field(default_factory=list)  # snapshots held for this destination
    next_full: Optional[float] = None  # when the job's full_if_older_than starts a new chain

    @property
    def breached(self) -> bool:
        return self.rpo is not None and (self.age is None or self.age > self.rpo)


@dataclass
class DestinationStatus:
    destination: str
    datasets: list
    archives: int
    bytes: int
    incomplete_uploads: list  # the catalog's rows: started and never finished
    thaws: list  # thaws requested and not yet read
    last_verify: Optional[dict]  # {"finished", "ok", "failed", "missing"} of the last zg-verify run
    last_drill: Optional[dict]

    @property
    def breached(self) -> list:
        return [d for d in self.datasets if d.breached]


def _when(a):
    return a.snap_created or a.uploaded


def _order(a):
    """Newest first: by the snapshot's time, then the upload's (snapshots a second apart share one)."""
    return (_when(a), a.uploaded)


def _last_run(checks):
    """The newest run among ``checks`` (rows noted within a minute of its last one), summed."""
    if not checks:
        return None
    last = checks[-1]["finished"]
    run = [c for c in checks if last - c["finished"] < 60]
    return dict(finished=last, ok=sum(c["result"] == "ok" for c in run),
                failed=sum(c["result"] == "FAIL" for c in run), missing=sum(c["result"] == "MISSING" for c in run))


def destination_status(cat, dest, now, *, rpo=None, zfs=None, expected=(), full_after=None):
    """The status of every dataset with archives at ``dest``, and of those ``expected`` there (a
    job's: one never backed up is a breach).  ``rpo``: seconds, or a function of the dataset
    (None: no RPO); ``full_after(dataset)``: the age at which a new chain starts, or None."""
    rpo_of = rpo if callable(rpo) else (lambda ds: rpo)
    full_of = full_after or (lambda ds: None)
    archives = cat.archives(dest)
    checks = cat.checks(dest)
    passed = {}
    for c in checks:
        if c["result"] == "ok":
            passed.setdefault(c["kind"], {})[c["id"]] = c["finished"]
    held = {}
    if zfs is not None:
        try:
            for h in backup.holds(zfs, cat, dest):
                if h.get("held"):
                    held.setdefault(h["dataset"], []).append(h["snapshot"])
        except ZgError:
            pass  # no ZFS here (a monitoring host with a copy of the catalog): no holds to show
    rows = []
    for ds in sorted({a.dataset for a in archives if a.dataset} | set(expected)):
        mine = sorted((a for a in archives if a.dataset == ds), key=_order, reverse=True)
        good, broken = None, None
        for a in mine:
            try:
                good = (a, chains.chain_to(archives, a.toguid, a.name))
                break
            except NotFoundError as err:
                broken = broken or str(err)
        ids = {a.id for a in mine}
        verified = max((t for i, t in passed.get("verify", {}).items() if i in ids), default=None)
        drilled = max((t for i, t in passed.get("drill", {}).items() if i in ids), default=None)
        if good is None:
            rows.append(DatasetStatus(ds, None, None, None, None, rpo_of(ds),
                                      broken=broken or ("never backed up here" if not mine else None),
                                      last_verified=verified, last_drill=drilled, held=held.get(ds, [])))
            continue
        a, chain = good
        full_age = full_of(ds)
        rows.append(DatasetStatus(ds, a.snapshot, a.id, _when(a), max(0.0, now - _when(a)), rpo_of(ds),
                                  len(chain.archives), chain.archives[0].uploaded,
                                  broken if mine[0] is not a else None, verified, drilled, held.get(ds, []),
                                  chain.archives[0].uploaded + full_age if full_age else None))
    return DestinationStatus(dest, rows, len(archives), sum(a.size for a in archives), cat.uploads(dest),
                             cat.thaws(dest), _last_run([c for c in checks if c["kind"] == "verify"]),
                             _last_run([c for c in checks if c["kind"] == "drill"]))
