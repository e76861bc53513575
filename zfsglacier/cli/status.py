"""zg-status: is every dataset backed up recently enough, and when was anything last read back?

From the catalog (and the local ZFS for holds), never the store: it costs nothing and thaws
nothing, so a monitoring system can run it every few minutes.  The report goes to stdout (or
JSON); a breached RPO is exit 21 with one line on stderr; ``--nagios`` prints one plugin line
and exits 0/1/2/3 (OK, WARNING, CRITICAL, UNKNOWN); ``--prometheus FILE`` also writes the metrics
in node_exporter's textfile-collector format (to FILE.tmp, then renamed: a scrape never sees half).
"""

import argparse
import os
import sys
import time

from ..catalog.db import open_catalog
from ..config import load_config
from ..errors import OutputClosedError, RpoBreachedError, UsageError, ZgError
from ..services import cost, status
from ..zfs import open_zfs
from . import jobs as jobs_config
from . import schema
from .common import parser, run
from .sizes import age_setting, parse_age
from .storeargs import open_dest

EXAMPLES = [
    ("zg-status", "every destination this host backs up to: each dataset's last good backup, its age against "
                  "the RPO, chains, holds, incomplete uploads, thaws, the last verify and drill"),
    ("zg-status offsite --rpo 26h --nagios", "a Nagios/Icinga check: CRITICAL when a backup is older than 26 hours"),
    ("zg-status --prometheus /var/lib/node_exporter/textfile/zfsglacier.prom",
     "the same numbers for Prometheus (node_exporter's textfile collector); zg-units --prometheus FILE makes a "
     "timer that does it every 15 minutes"),
]

NAGIOS = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
STALE_UPLOAD = 86400  # an incomplete upload older than this is a warning: a run died, and it is billed


def build_parser():
    p = parser("zg-status", "Say, from the catalog alone, whether each dataset's last good backup at each "
                            "destination is within its recovery point objective, and what else needs "
                            "attention. Exit 0, or 21 when an RPO is breached.", examples=EXAMPLES)
    p.add_argument("dests", nargs="*", metavar="DEST",
                   help="destinations to report (default: every named destination in config.toml this host has "
                        "archives at, and every other destination the catalog knows)")
    p.add_argument("--catalog", metavar="PATH", help="catalog file (default: $ZG_CATALOG, config.toml, "
                                                     "~/.local/share/zfsglacier/catalog.db)")
    p.add_argument("--rpo", type=parse_age, metavar="AGE",
                   help="recovery point objective for every dataset (e.g. 26h, 8d); default: the destination's "
                        "`rpo` in config.toml; none: ages are shown, never breached")
    p.add_argument("--json", action="store_true", help="the status as JSON (schema zfsglacier.status/1)")
    p.add_argument("--nagios", action="store_true",
                   help="one Nagios plugin line, exit 0 OK, 1 WARNING (a failed verify or drill, a stale upload, "
                        "a broken newer archive), 2 CRITICAL (an RPO breached), 3 UNKNOWN")
    p.add_argument("--prometheus", metavar="FILE",
                   help="also write the metrics to FILE in the Prometheus text format (node_exporter textfile)")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    if args.nagios and args.json:
        raise UsageError("--nagios and --json are two different outputs: give one")
    try:
        reports = _reports(args)
    except ZgError as err:
        if args.nagios:
            print(f"ZFSGLACIER UNKNOWN - {err}")
            return NAGIOS["UNKNOWN"]
        raise
    now = time.time()
    if args.prometheus:
        _write_prometheus(args.prometheus, reports, now)
    breaches = [f"{r.destination} {d.dataset}: {_breach(d)}" for r in reports for d in r.breached]
    warnings = [w for r in reports for w in _warnings(r, now)]
    if args.nagios:
        state = "CRITICAL" if breaches else "WARNING" if warnings else "OK"
        n = sum(len(r.datasets) for r in reports)
        words = "; ".join(breaches + warnings) or f"{n} dataset(s) at {len(reports)} destination(s) within their RPO"
        perf = " ".join(f"'{d.dataset}@{_short(r.destination)}'={int(d.age or 0)}s;;{int(d.rpo) if d.rpo else ''}"
                        for r in reports for d in r.datasets)
        print(f"ZFSGLACIER {state} - {words}" + (f" | {perf}" if perf else ""))
        return NAGIOS[state]
    if args.json:
        schema.dump("status", now=now, destinations=[_doc(r) for r in reports], breached=breaches,
                    warnings=warnings)
    else:
        _print(reports, now, warnings)
    if breaches:
        raise RpoBreachedError(f"RPO breached: {'; '.join(breaches)}")
    return 0


def _reports(args):
    config = load_config()
    with open_catalog(args.catalog, config, write=False, create=False) as cat:
        known = sorted({a.dest for a in cat.archives()})
        targets = []  # (url, rpo)
        for name in args.dests or []:
            url = _url(args, name)
            targets.append((url, _rpo(args, config, name)))
        if not args.dests:
            for name in sorted(config.destinations):
                url = _url(args, name)
                if url in known or any(j.destination == name for j in config.jobs.values()):
                    targets.append((url, _rpo(args, config, name)))
            targets += [(url, args.rpo) for url in known if url not in {t for t, _ in targets}]
        try:
            zfs = open_zfs()
        except ZgError:
            zfs = None  # a monitoring host without ZFS: no holds shown
        now = time.time()
        out = []
        for url, rpo in targets:
            mine = [j for j in config.jobs.values() if _url(args, j.destination) == url]
            per = {ds: j for j in mine for ds in j.datasets}
            rpo_of = (lambda ds, rpo=rpo, per=per: args.rpo if args.rpo is not None else
                      jobs_config.age(per[ds], "rpo") if ds in per and per[ds].get("rpo") else rpo)
            full_of = (lambda ds, per=per: jobs_config.age(per[ds], "full_if_older_than") if ds in per else None)
            out.append(status.destination_status(cat, url, now, rpo=rpo_of, zfs=zfs, expected=sorted(per),
                                                 full_after=full_of))
        return out


def _url(args, dest, _resolved={}):
    """The URL of ``dest`` (a name: under this host's prefix), resolved once per name: opening it
    reads the config and prints the store's warnings, which a status of many jobs must not repeat."""
    if dest not in _resolved:
        _resolved[dest] = open_dest(argparse.Namespace(dest=dest, catalog=args.catalog, host=None))[2]
    return _resolved[dest]


def _rpo(args, config, dest):
    if args.rpo is not None:
        return args.rpo
    if "://" in dest or dest.startswith("/"):
        return None
    return age_setting(config.destination(dest).options.get("rpo"), f"destination {dest!r}: rpo")


def _short(url):
    return url.split("://", 1)[-1]


def _ago(seconds):
    if seconds is None:
        return "never"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / 86400:.1f}d ago"


def _span(seconds):
    return _ago(seconds).replace(" ago", "")


def _due(seconds):
    return "due now" if seconds <= 0 else f"in {_span(seconds)}"


def _breach(d):
    if d.snapshot is None:
        return f"no restorable backup ({d.broken})" if d.broken else "no restorable backup"
    return f"last good backup @{d.snapshot} is {_span(d.age)} old, RPO {_span(d.rpo)}"


def _warnings(r, now):
    out = []
    for d in r.datasets:
        if d.broken and d.snapshot is not None:
            out.append(f"{r.destination} {d.dataset}: a newer archive cannot be restored ({d.broken})")
    stale = [u for u in r.incomplete_uploads if now - u["started"] > STALE_UPLOAD]
    if stale:
        out.append(f"{r.destination}: {len(stale)} incomplete upload(s) older than a day (`zg-ls {r.destination}` "
                   f"says how to finish or abort them)")
    for kind, last in (("verify", r.last_verify), ("drill", r.last_drill)):
        if last and (last["failed"] or last["missing"]):
            out.append(f"{r.destination}: the last zg-{kind} found {last['failed']} failed and {last['missing']} "
                       f"missing archive(s)")
    return out


def _print(reports, now, warnings):
    out = sys.stdout.write
    if not reports:
        out("no archives in the catalog: nothing is backed up from this host yet\n")
    for r in reports:
        out(f"{r.destination}: {r.archives} archives, {cost.human_bytes(r.bytes)}\n")
        for d in r.datasets:
            state = "BREACH" if d.breached else "ok" if d.rpo is not None else "-"
            last = f"@{d.snapshot} {_ago(d.age)}" if d.snapshot else "no restorable backup"
            rpo = f"RPO {_span(d.rpo)} {state}" if d.rpo is not None else "no RPO"
            chain = f"chain of {d.chain_length} (full {_ago(now - d.full_time)}" if d.snapshot else ""
            if chain:
                chain += (f", next full {_due(d.next_full - now)})" if d.next_full else ")")
            held = f"held {', '.join('@' + h.split('@', 1)[1] for h in d.held)}" if d.held else ""
            checked = f"verified {_ago(now - d.last_verified) if d.last_verified else 'never'}, drilled " \
                      f"{_ago(now - d.last_drill) if d.last_drill else 'never'}"
            out("  " + "  ".join(x for x in (d.dataset, last, rpo, chain, held, checked) if x) + "\n")
        verify = _run_words(r.last_verify, now)
        drill = _run_words(r.last_drill, now)
        out(f"  incomplete uploads: {len(r.incomplete_uploads)}; thaws pending: {len(r.thaws)}; last verify: "
            f"{verify}; last drill: {drill}\n")
    for w in warnings:
        out(f"warning: {w}\n")


def _run_words(run, now):
    if not run:
        return "never"
    return f"{_ago(now - run['finished'])} ({run['ok']} ok, {run['failed']} failed, {run['missing']} missing)"


def _doc(r):
    return dict(destination=r.destination, archives=r.archives, bytes=r.bytes,
                incomplete_uploads=len(r.incomplete_uploads), thaws_pending=len(r.thaws),
                last_verify=r.last_verify, last_drill=r.last_drill,
                datasets=[dict(dataset=d.dataset, snapshot=d.snapshot, archive=d.archive,
                               snapshot_time=d.snapshot_time, age=d.age, rpo=d.rpo, breached=d.breached,
                               chain_length=d.chain_length, full_time=d.full_time, broken=d.broken,
                               last_verified=d.last_verified, last_drill=d.last_drill, held=d.held,
                               next_full=d.next_full)
                          for d in r.datasets])


# --- Prometheus text format (https://prometheus.io/docs/instrumenting/exposition_formats/) ------

_METRICS = [  # name, type, help
    ("zfsglacier_last_backup_timestamp_seconds", "gauge", "When the snapshot of the last good backup was taken."),
    ("zfsglacier_last_backup_age_seconds", "gauge", "Age of the last good backup's snapshot."),
    ("zfsglacier_rpo_seconds", "gauge", "The recovery point objective (absent: none set)."),
    ("zfsglacier_rpo_breached", "gauge", "1 when the last good backup is older than the RPO (or there is none)."),
    ("zfsglacier_chain_length", "gauge", "Archives a restore of the last good backup receives."),
    ("zfsglacier_last_verified_timestamp_seconds", "gauge", "When an archive of the dataset last passed zg-verify."),
    ("zfsglacier_last_drill_timestamp_seconds", "gauge", "When an archive of the dataset last passed zg-drill."),
    ("zfsglacier_archives", "gauge", "Archives the catalog records at the destination."),
    ("zfsglacier_stored_bytes", "gauge", "Bytes those archives take."),
    ("zfsglacier_incomplete_uploads", "gauge", "Uploads started and never finished (billed until aborted)."),
    ("zfsglacier_pending_thaws", "gauge", "Thaws requested and not yet read."),
    ("zfsglacier_status_timestamp_seconds", "gauge", "When zg-status wrote this file."),
]


def _number(value):
    return str(value) if isinstance(value, int) else repr(float(value))  # all digits of a timestamp


def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(reports, now):
    samples = {name: [] for name, _, _ in _METRICS}
    for r in reports:
        dest = f'destination="{_label(r.destination)}"'
        samples["zfsglacier_archives"].append((dest, r.archives))
        samples["zfsglacier_stored_bytes"].append((dest, r.bytes))
        samples["zfsglacier_incomplete_uploads"].append((dest, len(r.incomplete_uploads)))
        samples["zfsglacier_pending_thaws"].append((dest, len(r.thaws)))
        for d in r.datasets:
            labels = f'{dest},dataset="{_label(d.dataset)}"'
            if d.snapshot_time is not None:
                samples["zfsglacier_last_backup_timestamp_seconds"].append((labels, d.snapshot_time))
                samples["zfsglacier_last_backup_age_seconds"].append((labels, d.age))
                samples["zfsglacier_chain_length"].append((labels, d.chain_length))
            if d.rpo is not None:
                samples["zfsglacier_rpo_seconds"].append((labels, d.rpo))
            samples["zfsglacier_rpo_breached"].append((labels, int(d.breached)))
            if d.last_verified is not None:
                samples["zfsglacier_last_verified_timestamp_seconds"].append((labels, d.last_verified))
            if d.last_drill is not None:
                samples["zfsglacier_last_drill_timestamp_seconds"].append((labels, d.last_drill))
    samples["zfsglacier_status_timestamp_seconds"].append(("", now))
    lines = []
    for name, kind, text in _METRICS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{{{labels}}} {_number(value)}" if labels else f"{name} {_number(value)}"
                  for labels, value in samples[name]]
    return "\n".join(lines) + "\n"


def _write_prometheus(path, reports, now):
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(prometheus_text(reports, now))
        os.replace(tmp, path)  # the collector reads *.prom only, and never a half-written one
    except OSError as err:
        raise OutputClosedError(f"cannot write {path}: {err.strerror}") from None


def main(argv=None):
    return run("zg-status", body, argv, report=True)
