"""Making cold archives readable: the one thaw service of zg-fetch, zg-restore and zg-verify.

Every thaw is asked for at once (they run in parallel at the provider: a chain of 30 archives in
DEEP_ARCHIVE takes the 12 hours of one, not 30 times that), each request is noted in the catalog
as it is made, and the wait polls with a growing interval.  Nothing here reads the environment or
the clock of its own: the caller passes a Policy (tests give it a short poll and their own sleep).
"""

import datetime
import time
from dataclasses import dataclass, field
from typing import Callable

from . import cost
from ..errors import NotFoundError, RestorePendingError

READY = ("ready", "thawed")


@dataclass
class Policy:
    tier: str = "Standard"
    days: int = 7  # an S3 restored copy stays readable this long
    wait: bool = True  # False: ask, then RestorePendingError (exit 75) while any is pending
    poll: float = 60.0  # first wait between checks; it grows by half each time, up to max_poll
    max_poll: float = 900.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    now: Callable[[], float] = field(default=time.time, repr=False)  # wall time, for "expected by"


def thaw_all(store, dest, cat, ids, policy, say=lambda s: None, on_missing=None):
    """Make every archive of ``ids`` readable.  ``on_missing(id, error)``: an archive the store
    does not have is handed to it and left out (zg-verify goes on with the others); without it,
    that is an error."""
    pending, waits = [], {}
    for archive_id in ids:
        try:
            status = _ask(store, dest, cat, archive_id, policy,
                          store.thaw_status(archive_id, version=_version(cat, dest, archive_id)))
        except NotFoundError as err:
            if on_missing is None:
                raise
            on_missing(archive_id, err)
            continue
        if status.state not in READY:
            pending.append(archive_id)
            waits[archive_id] = status
    due = _expected(store, dest, cat, pending, policy)
    if pending and not policy.wait:
        first = waits[pending[0]]
        last = max((due[i] for i in pending if due.get(i)), default=None)
        when = f" (all expected by {_utc(last)})" if last else ""
        raise RestorePendingError(f"{len(pending)} of {len(ids)} archives are being thawed ({policy.tier} tier"
                                  f"{_typically(waits.values())}): {first.detail}; run the same command again "
                                  f"later{when}")
    start, delay = policy.clock(), policy.poll
    while pending:
        first = min((due[i] for i in pending if due.get(i)), default=None)
        by = f"; the first expected by {_utc(first)}" if first else ""
        say(f"waiting for {len(pending)} of {len(ids)} thaw(s) ({policy.tier} tier{by}): "
            f"{_elapsed(policy.clock() - start)} so far; {waits[pending[0]].detail}")
        policy.sleep(delay)
        delay = min(delay * 1.5, policy.max_poll)
        still = []
        for archive_id in pending:
            status = _ask(store, dest, cat, archive_id, policy,
                          store.thaw_status(archive_id, version=_version(cat, dest, archive_id)))
            if status.state in READY:
                cat.thaw_requested(dest, archive_id, policy.tier, policy.days, status.state, status.detail)
            else:
                still.append(archive_id)
                waits[archive_id] = status
        pending = still


def _ask(store, dest, cat, archive_id, policy, status):
    """A frozen archive (never asked, or its restored copy expired) is asked to thaw, and noted."""
    if status.state == "frozen":
        status = store.request_thaw(archive_id, tier=policy.tier, days=policy.days,
                                    version=_version(cat, dest, archive_id))
        cat.thaw_requested(dest, archive_id, policy.tier, policy.days, status.state, status.detail)
    return status


def _version(cat, dest, archive_id):
    """The version recorded at upload (what reads name too), where the catalog knows the archive."""
    row = cat.get(dest, archive_id)
    return row.version if row is not None else None


def _expected(store, dest, cat, ids, policy):
    """When each thaw should be done, by the price table's typical hours for its class and tier,
    counted from when it was asked for (the catalog's note; now, where there is none)."""
    asked = {t["id"]: t["requested"] for t in cat.thaws(dest)}
    due = {}
    for archive_id in ids:
        row = cat.get(dest, archive_id)
        hours = cost.thaw_hours(store.price_class(row.storage_class if row is not None else None), policy.tier)
        if hours is not None:
            due[archive_id] = asked.get(archive_id, policy.now()) + hours * 3600
    return due


def _utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _elapsed(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _typically(statuses):
    hours = max((s.expected_wait or 0 for s in statuses), default=0) // 3600
    return f", typically {hours}h or less" if hours else ""
