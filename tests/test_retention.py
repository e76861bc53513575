"""Retention policy (zfsglacier.retention): pure functions over catalog rows and a fake clock."""

import calendar
import datetime
import itertools

import pytest

from zfsglacier.services import cost
from zfsglacier.catalog.db import ArchiveRow
from zfsglacier.catalog.chains import chain_to
from zfsglacier.errors import UsageError
from zfsglacier.services.retention import (Rules, Snapshot, group_snapshots, lock_shortfalls, period_of, plan,
                                          select_keep)

DAY = 86400
DEST = "file:///nowhere"


def ts(*args):
    """Epoch seconds of a UTC date-time."""
    return calendar.timegm(datetime.datetime(*args).timetuple())


NOW = ts(2026, 11, 27, 12)
_guid = itertools.count(1000)


def row(id, *, toguid=None, fromguid=0, created=None, uploaded=None, dataset="tank/db", size=1 << 30,
        storage_class="LOCAL"):
    """A live catalog row; ``created`` is the snapshot time, upload follows it by an hour."""
    created = NOW - DAY if created is None else created
    return ArchiveRow(DEST, id, size, None, None, uploaded if uploaded is not None else created + 3600,
                      storage_class, toguid if toguid is not None else next(_guid), fromguid or None,
                      int(created), "plain", dataset, id if dataset else None, {}, None)


def chain(prefix, start, n, *, step=DAY, dataset="tank/db", **kw):
    """A full then n-1 incrementals, one per ``step`` from ``start``."""
    rows, prev = [], 0
    for i in range(n):
        r = row(f"{prefix}{i}", fromguid=prev, created=start + i * step, dataset=dataset, **kw)
        rows.append(r)
        prev = r.toguid
    return rows


def snaps(times):
    return [Snapshot("g", i + 1, float(t)) for i, t in enumerate(times)]


def kept_times(kept):
    return sorted(s.time for s in kept)


def ids(decisions):
    return sorted(d.id for d in decisions)


# --- rules -----------------------------------------------------------------------------------------

def test_no_rule_is_refused_rather_than_deleting_everything():
    with pytest.raises(UsageError, match="delete everything"):
        plan([row("a")], Rules(), NOW)
    with pytest.raises(UsageError, match="delete everything"):
        select_keep(snaps([NOW]), Rules(daily=0), NOW)
    with pytest.raises(UsageError):
        Rules(daily=-1)


def test_daily_keeps_newest_of_each_of_the_last_n_days():
    # every 6 hours for 10 days, the last at 06:00 today
    times = [ts(2026, 11, 18) + i * 6 * 3600 for i in range(38)]
    kept = select_keep(snaps(times), Rules(daily=3), NOW)
    assert kept_times(kept) == [ts(2026, 11, 25, 18), ts(2026, 11, 26, 18), ts(2026, 11, 27, 6)]
    assert sorted(r for rs in kept.values() for r in rs) == ["daily 2026-11-25", "daily 2026-11-26",
                                                             "daily 2026-11-27"]


def test_periods_count_only_days_that_have_a_snapshot():
    """restic/borg: a gap in the backups does not eat into the N days."""
    times = [ts(2026, 11, d, 3) for d in (1, 2, 5, 9)]
    kept = select_keep(snaps(times), Rules(daily=3), NOW)
    assert kept_times(kept) == [ts(2026, 11, 2, 3), ts(2026, 11, 5, 3), ts(2026, 11, 9, 3)]


def test_weekly_uses_iso_weeks_across_the_new_year():
    # 2026-12-28 (Mon) and 2027-01-03 (Sun) are both ISO week 2026-W53; 2027-01-04 (Mon) is 2027-W01.
    times = [ts(2026, 12, 28, 1), ts(2027, 1, 3, 23), ts(2027, 1, 4, 1)]
    kept = select_keep(snaps(times), Rules(weekly=2), ts(2027, 1, 5))
    assert kept_times(kept) == [ts(2027, 1, 3, 23), ts(2027, 1, 4, 1)]
    assert {r for rs in kept.values() for r in rs} == {"weekly 2026-W53", "weekly 2027-W01"}


def test_periods_are_utc():
    # 23:30 UTC and 00:30 UTC the next day are two days whatever the local zone says
    assert period_of("daily", ts(2026, 11, 26, 23, 30)) != period_of("daily", ts(2026, 11, 27, 0, 30))
    assert period_of("hourly", ts(2026, 11, 27, 13, 59)) == "2026-11-27T13"
    assert period_of("yearly", ts(2026, 1, 1)) == "2026"


def oracle(times, rule, n):
    """The same semantics stated as sets: newest per period, the n newest periods."""
    newest = {}
    for t in times:
        p = period_of(rule, t)
        newest[p] = max(newest.get(p, t), t)
    return {newest[p] for p in sorted(newest, reverse=True)[:n]}


def test_two_years_of_dailies_daily_weekly_monthly():
    start = ts(2024, 11, 28, 3)
    times = [start + i * DAY for i in range(730)]  # up to 2026-11-27 03:00
    rules = Rules(daily=7, weekly=8, monthly=24)
    kept = select_keep(snaps(times), rules, NOW)
    expect = oracle(times, "daily", 7) | oracle(times, "weekly", 8) | oracle(times, "monthly", 24)
    assert set(kept_times(kept)) == expect
    assert len(kept) == len(expect) < 7 + 8 + 24  # overlaps are kept once
    newest = max(kept, key=lambda s: s.time)
    assert kept[newest] == ["daily 2026-11-27", "weekly 2026-W48", "monthly 2026-11"]
    # every earlier month's last day; the month before the 24 months has nothing kept
    for y, m in [(2025, 1), (2025, 6), (2026, 10)]:
        last = ts(y, m, calendar.monthrange(y, m)[1], 3)
        assert f"monthly {y}-{m:02d}" in kept[next(s for s in kept if s.time == last)]
    assert min(kept_times(kept)) == ts(2024, 12, 31, 3)
    # weeklies are Sundays (ISO weeks end on Sunday) except the current week
    weekly = [s for s, r in kept.items() if any(x.startswith("weekly") for x in r)]
    assert len(weekly) == 8
    assert all(datetime.datetime.fromtimestamp(s.time, datetime.timezone.utc).isoweekday() == 7
               for s in weekly if s is not newest)


def test_keep_last_and_daily_overlap_is_kept_once_with_both_reasons():
    times = [ts(2026, 11, 27, h) for h in (1, 2, 3)] + [ts(2026, 11, 26, 5)]
    kept = select_keep(snaps(times), Rules(last=2, daily=2), NOW)
    assert kept_times(kept) == [ts(2026, 11, 26, 5), ts(2026, 11, 27, 2), ts(2026, 11, 27, 3)]
    top = max(kept, key=lambda s: s.time)
    assert kept[top] == ["last 1/2", "daily 2026-11-27"]


def test_hourly_and_yearly():
    times = [ts(2024, 3, 1), ts(2025, 7, 1), ts(2025, 8, 1), ts(2026, 11, 27, 10, 5), ts(2026, 11, 27, 10, 50),
             ts(2026, 11, 27, 11, 10)]
    assert kept_times(select_keep(snaps(times), Rules(hourly=2), NOW)) == [ts(2026, 11, 27, 10, 50),
                                                                           ts(2026, 11, 27, 11, 10)]
    assert kept_times(select_keep(snaps(times), Rules(yearly=5), NOW)) == [ts(2024, 3, 1), ts(2025, 8, 1),
                                                                           ts(2026, 11, 27, 11, 10)]


# --- chains -----------------------------------------------------------------------------------------

def test_kept_newest_incremental_keeps_every_ancestor():
    rows = chain("c", NOW - 20 * DAY, 10)
    p = plan(rows, Rules(last=1), NOW)
    assert p.delete == [] and p.deferred == []
    by_id = {d.id: d for d in p.keep}
    assert by_id["c9"].reasons == ["last 1/1"]
    assert all(by_id[f"c{i}"].reasons == ["needed by c9"] for i in range(9))


def test_several_chains_older_one_goes_whole():
    old = chain("a", NOW - 60 * DAY, 4)
    new = chain("b", NOW - 10 * DAY, 4)
    p = plan(old + new, Rules(last=2), NOW)
    assert ids(p.delete) == ["a0", "a1", "a2", "a3"]
    assert ids(p.keep) == ["b0", "b1", "b2", "b3"]
    remaining = [d.archive for d in p.keep]
    assert [a.id for a in chain_to(remaining, new[-1].toguid).archives] == ["b0", "b1", "b2", "b3"]
    assert [a.id for a in chain_to(remaining, new[-2].toguid).archives] == ["b0", "b1", "b2"]


def test_full_stays_under_a_monthly_incremental_while_the_chain_tail_goes():
    """The incremental kept as October's monthly pins its full and the incrementals between;
    the same chain's later incrementals, which no rule keeps, go."""
    old = chain("m", ts(2026, 10, 20, 3), 17)          # 2026-10-20 .. 2026-11-05
    new = chain("n", ts(2026, 11, 20, 3), 8)           # 2026-11-20 .. 2026-11-27
    p = plan(old + new, Rules(daily=3, monthly=2), NOW)
    keep = {d.id: d.reasons for d in p.keep}
    assert keep["m11"] == ["monthly 2026-10"]
    assert keep["m0"] == ["needed by m11"]
    assert keep["n7"] == ["daily 2026-11-27", "monthly 2026-11"]
    assert ids(p.delete) == sorted(f"m{i}" for i in range(12, 17))
    remaining = [d.archive for d in p.keep]
    assert len(chain_to(remaining, old[11].toguid).archives) == 12
    p = plan(old + new, Rules(daily=1, monthly=1), NOW)
    assert ids(p.delete) == sorted(f"m{i}" for i in range(17))


def test_nameless_rows_are_grouped_by_chain():
    """A catalog rebuilt without names: each chain is its own retention group."""
    x = chain("x", NOW - 30 * DAY, 3, dataset=None)
    y = chain("y", NOW - 9 * DAY, 3, dataset=None)
    groups = group_snapshots(x + y)
    assert sorted(groups) == ["chain of x0", "chain of y0"]
    p = plan(x + y, Rules(last=1), NOW)
    assert ids(p.delete) == [] and {d.id for d in p.keep if d.reasons[0] == "last 1/1"} == {"x2", "y2"}


def test_nameless_incremental_joins_its_named_chain():
    named = chain("d", NOW - 5 * DAY, 3)
    orphan = row("q", fromguid=named[-1].toguid, created=NOW - 2 * DAY, dataset=None)
    assert list(group_snapshots(named + [orphan])) == ["dataset tank/db"]
    p = plan(named + [orphan], Rules(last=1), NOW)
    assert [d.id for d in p.keep if d.reasons == ["last 1/1"]] == ["q"]


def test_broken_chain_keeps_what_exists_and_warns_once():
    rows = chain("k", NOW - 10 * DAY, 5)
    del rows[1]                                         # k1 gone: k2..k4 cannot be restored
    p = plan(rows, Rules(last=1), NOW)
    assert ids(p.keep) == ["k2", "k3", "k4"]
    assert ids(p.delete) == ["k0"]
    assert len(p.warnings) == 1 and "\n" not in p.warnings[0]
    assert "broken" in p.warnings[0] and "k2" in p.warnings[0] and "3 archive(s)" in p.warnings[0]


def test_second_copy_of_a_kept_snapshot_goes_when_nothing_needs_it():
    """A re-sent full to the same guid makes the incremental chain to it spare."""
    rows = chain("s", NOW - 10 * DAY, 3)
    refull = row("sf", toguid=rows[-1].toguid, created=rows[-1].snap_created, uploaded=NOW - 3600)
    p = plan(rows + [refull], Rules(last=1), NOW)
    assert ids(p.keep) == ["sf"]
    assert ids(p.delete) == ["s0", "s1", "s2"]
    assert "another copy" in next(d for d in p.delete if d.id == "s2").reasons[0]


def test_rename_chain_spanning_datasets_is_not_cut():
    """tank/db renamed tank/db2: incrementals continue the old chain under the new name, so the
    old name's archives stay for the new name's kept snapshot, with or without a DATASET filter."""
    old = chain("o", NOW - 10 * DAY, 3, dataset="tank/db")
    refull = row("of", created=NOW - 5 * DAY, dataset="tank/db")      # tank/db's newest snapshot
    new = row("r", fromguid=old[-1].toguid, created=NOW - DAY, dataset="tank/db2")
    other = [row(f"z{i}", created=NOW - (40 - i) * DAY, dataset="tank/db/child") for i in range(2)]
    rows = old + [refull, new] + other
    p = plan(rows, Rules(last=1), NOW)
    assert ids(p.delete) == ["z0"]
    assert next(d for d in p.keep if d.id == "o0").reasons == ["needed by r"]
    p = plan(rows, Rules(last=1), NOW, dataset="tank/db")
    assert "r" not in ids(p.keep + p.delete + p.deferred)      # out of scope: not even listed
    assert ids(p.delete) == ["z0"]                               # children are in scope
    assert {"o0", "o1", "o2", "of"} <= set(ids(p.keep))
    p = plan(rows, Rules(last=1), NOW, dataset="tank/db2")
    assert ids(p.keep) == ["r"] and p.delete == []


# --- minimum storage duration ------------------------------------------------------------------------

def test_min_duration_defers_cold_archives_not_local_ones():
    classes = {"deep": "DEEP_ARCHIVE", "glac": "GLACIER", "local": "LOCAL"}
    rows = []
    for name in classes:
        rows += [row(f"{name}-30d", uploaded=NOW - 30 * DAY, created=NOW - 31 * DAY, dataset=name),
                 row(f"{name}-100d", uploaded=NOW - 100 * DAY, created=NOW - 101 * DAY, dataset=name),
                 row(f"{name}-200d", uploaded=NOW - 200 * DAY, created=NOW - 201 * DAY, dataset=name),
                 row(f"{name}-now", uploaded=NOW - 60, created=NOW - 120, dataset=name)]
    for r in rows:
        r.storage_class = classes[r.dataset]

    def cls(r):
        return r.storage_class

    p = plan(rows, Rules(last=1), NOW, storage_class=cls)
    assert ids(p.keep) == ["deep-now", "glac-now", "local-now"]
    assert ids(p.deferred) == ["deep-100d", "deep-30d", "glac-30d"]
    assert ids(p.delete) == ["deep-200d", "glac-100d", "glac-200d", "local-100d", "local-200d", "local-30d"]
    d = next(d for d in p.deferred if d.id == "deep-30d")
    assert d.until == NOW - 30 * DAY + 180 * DAY
    assert d.early_cost > 0
    assert d.early_cost == pytest.approx(cost.early_deletion(1 << 30, "DEEP_ARCHIVE", 30 * DAY)[1])
    assert next(d for d in p.deferred if d.id == "glac-30d").until == NOW + 60 * DAY
    assert all(d.early_cost == 0 for d in p.delete)
    expected = sum(cost.monthly_storage(1 << 30, classes[i.split("-")[0]]) for i in ids(p.delete))
    assert expected > 0 and p.monthly_saving == pytest.approx(expected)

    early = plan(rows, Rules(last=1), NOW, storage_class=cls, delete_early=True)
    assert early.deferred == [] and len(early.delete) == 9
    assert early.early_cost > 0
    assert early.early_cost == pytest.approx(sum(d.early_cost for d in p.deferred))


def test_storage_class_given_as_one_name():
    rows = [row("g1", uploaded=NOW - 10 * DAY, created=NOW - 11 * DAY),
            row("g2", uploaded=NOW - DAY, created=NOW - 2 * DAY)]
    p = plan(rows, Rules(last=1), NOW, storage_class="VAULT")
    assert ids(p.deferred) == ["g1"] and p.deferred[0].cls == "VAULT"


def test_a_restore_plan_prices_each_archive_in_its_own_class():
    """A chain whose full is in DEEP_ARCHIVE and whose incremental is in STANDARD: each is priced
    and timed from its own class (STANDARD: at once), not both from the destination's."""
    from types import SimpleNamespace as NS
    from zfsglacier.services import restore

    full = NS(id="a1", fromguid=None, size=2 << 30, name="tank@s0", storage_class="DEEP_ARCHIVE")
    incr = NS(id="a2", fromguid=1, size=1 << 30, name="tank@s1", storage_class="STANDARD")
    text = restore.describe(NS(archives=[full, incr], size=3 << 30), lambda a: a.storage_class)
    assert "from DEEP_ARCHIVE (1 archive, 2.0 GiB)" in text and "from STANDARD (1 archive, 1.0 GiB)" in text
    deep = cost.retrieval_options(2 << 30, "DEEP_ARCHIVE")
    assert all(cost.dollars(r.dollars) in text for r in deep)
    assert "immediate" in text and "at once" in text


def test_a_chain_is_locked_as_long_as_its_longest_locked_dependent_and_past_locks_ask_nothing():
    full, a, b = chain("c", NOW - 10 * DAY, 3)
    other = row("x")  # another chain: never extended for this one
    full.locked_until, a.locked_until, b.locked_until = NOW + 5 * DAY, NOW + 9 * DAY, NOW + 7 * DAY
    other.locked_until = NOW + DAY
    assert lock_shortfalls([full, a, b, other], NOW) == {full.id: NOW + 9 * DAY}
    a.locked_until = NOW - DAY  # expired: nothing to extend for it; b still needs a and the full
    assert lock_shortfalls([full, a, b, other], NOW) == {full.id: NOW + 7 * DAY, a.id: NOW + 7 * DAY}
    b.locked_until = NOW - DAY
    assert lock_shortfalls([full, a, b], NOW) == {}


def test_of_snapshots_taken_in_one_second_the_one_archived_later_is_the_newest():
    """ZFS creation times are whole seconds: two snapshots of one second are told apart by when
    their archives were uploaded, never by their (random) guids; keep-last 1 keeps the later."""
    for guids in ((10, 5), (5, 10)):  # either order of guids
        first = row("f", toguid=guids[0], created=NOW - DAY, uploaded=NOW - 100)
        second = row("s", toguid=guids[1], fromguid=guids[0], created=NOW - DAY, uploaded=NOW - 50)
        p = plan([first, second], Rules(last=1), NOW)
        assert {d.id: d.reasons for d in p.keep} == {"s": ["last 1/1"], "f": ["needed by s"]}
        full = row("g", toguid=guids[1], created=NOW - DAY, uploaded=NOW - 50)
        p = plan([first, full], Rules(last=1), NOW)
        assert ids(p.keep) == ["g"] and ids(p.delete) == ["f"]
