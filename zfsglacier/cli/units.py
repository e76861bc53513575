"""zg-units: the systemd units (or cron lines) that run the jobs of config.toml.

For each job: a backup service and timer (``schedule``, default daily), a prune pair when it has
keep_* rules (``prune_schedule``, default weekly) and a restore-drill pair (``drill_schedule``,
default monthly, within ``drill_max_cost``).  Each service is a oneshot that runs the command with
the configuration it was written from; ``systemctl stop`` sends SIGTERM, on which the commands
abort their upload and record nothing half-done; runs of the same dataset never overlap (the
commands' own lock: the second exits 17, or waits --lock-wait).  Timers are Persistent (a run
missed while the host was off happens at boot) with a randomised delay, so that a fleet does not
upload at the same second.
"""

import os
import shutil
import sys

from ..config import config_path, load_config
from ..errors import OutputClosedError, UsageError
from . import jobs as jobs_config
from .common import parser, run

EXAMPLES = [
    ("zg-units -o /etc/systemd/system", "write every job's units, then: systemctl daemon-reload; systemctl enable "
                                        "--now zfsglacier-backup-JOB.timer (zg-units says which)"),
    ("zg-units --job nightly", "print one job's units to stdout, to read before installing them"),
    ("zg-units --cron > /etc/cron.d/zfsglacier", "the same as cron lines, for a host without systemd"),
]

CRON = {"hourly": "@hourly", "daily": "@daily", "weekly": "@weekly", "monthly": "@monthly", "yearly": "@yearly"}
KINDS = {  # kind: (command, schedule key, default schedule, what)
    "backup": ("zg-backup", "schedule", "daily", "back up"),
    "prune": ("zg-prune", "prune_schedule", "weekly", "prune, by its keep rules,"),
    "drill": ("zg-drill", "drill_schedule", "monthly", "test-restore (a drill of)"),
}


def build_parser():
    p = parser("zg-units", "Write the systemd service and timer units (or cron lines) that run the jobs in "
                           "config.toml: zg-backup --job, zg-prune --job and zg-drill --job on their schedules.",
               examples=EXAMPLES)
    p.add_argument("--job", action="append", default=[], metavar="NAME",
                   help="only this job (repeatable; default: every job in config.toml)")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="write the unit files into DIR (e.g. /etc/systemd/system; existing ones are replaced) "
                        "instead of printing them")
    p.add_argument("--cron", action="store_true", help="cron lines (/etc/cron.d format, run as root) instead")
    p.add_argument("--prometheus", metavar="FILE",
                   help="also a timer that runs zg-status --prometheus FILE every 15 minutes (node_exporter's "
                        "textfile directory, e.g. /var/lib/prometheus/node-exporter/zfsglacier.prom)")
    p.add_argument("--bin", metavar="DIR",
                   help="where the zg-* commands are (default: found on PATH, else beside this one)")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    config = load_config()
    names = args.job or sorted(config.jobs)
    if not names:
        raise UsageError(f"no [jobs.NAME] in {config.path or config_path()}: nothing to schedule "
                         f"(`zg-config sample` shows one)")
    jobs = [config.job(n) for n in names]
    where = config.path or config_path()
    if args.cron:
        if args.output:
            raise UsageError("--cron prints cron lines: redirect them (zg-units --cron > /etc/cron.d/zfsglacier)")
        sys.stdout.write(cron_lines(jobs, where, args.bin))
        if args.prometheus:
            sys.stdout.write(f"*/15 * * * * root {command('zg-status', args.bin)} --prometheus {args.prometheus} "
                             f">/dev/null\n")
        return 0
    units = {}
    for job in jobs:
        units.update(job_units(job, where, args.bin))
    if args.prometheus:
        units.update(status_units(args.prometheus, where, args.bin))
    if not args.output:
        for name, text in units.items():
            sys.stdout.write(f"# {name}\n{text}\n")
        return 0
    for name, text in units.items():
        _write(os.path.join(args.output, name), text)
    timers = " ".join(n for n in units if n.endswith(".timer"))
    print(f"wrote {len(units)} units to {args.output}; now: systemctl daemon-reload && systemctl enable --now {timers}")
    return 0


def command(name, bin_dir):
    """The absolute path of zg-NAME (systemd wants one)."""
    if bin_dir:
        return os.path.join(os.path.abspath(bin_dir), name)
    found = shutil.which(name)
    if found:
        return os.path.abspath(found)
    return os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name)


def _kinds(job):
    out = ["backup"]
    if any(job.get(f"keep_{k}") for k in ("last", "hourly", "daily", "weekly", "monthly", "yearly")):
        out.append("prune")
    out.append("drill")
    return out


def job_units(job, config_file, bin_dir=None):
    """{unit file name: text} for ``job``."""
    units = {}
    for kind in _kinds(job):
        cmd, key, default, what = KINDS[kind]
        schedule = jobs_config.schedule(job, key, default)
        unit = f"zfsglacier-{kind}-{job.name}"
        extra = f" --max-cost {job.get('drill_max_cost')}" if kind == "drill" and job.get("drill_max_cost") else ""
        units[f"{unit}.service"] = f"""[Unit]
Description=zfsglacier: {what} job {job.name} ({', '.join(job.datasets)} to {job.destination})
Wants=network-online.target
After=network-online.target zfs.target

[Service]
Type=oneshot
ExecStart={command(cmd, bin_dir)} --job {job.name}{extra}
Environment=ZG_CONFIG={os.path.abspath(config_file)}
Nice=10
IOSchedulingClass=idle
TimeoutStopSec=10min
"""
        units[f"{unit}.timer"] = f"""[Unit]
Description=zfsglacier: {what} job {job.name} ({schedule})

[Timer]
OnCalendar={schedule}
Persistent=true
RandomizedDelaySec=15min

[Install]
WantedBy=timers.target
"""
    return units


def status_units(prometheus, config_file, bin_dir=None):
    """zg-status every 15 minutes, writing the metrics file; a breached RPO (exit 21) is in the
    metrics, not a failed unit."""
    return {"zfsglacier-status.service": f"""[Unit]
Description=zfsglacier: status metrics for Prometheus ({prometheus})

[Service]
Type=oneshot
ExecStart={command('zg-status', bin_dir)} --prometheus {os.path.abspath(prometheus)}
Environment=ZG_CONFIG={os.path.abspath(config_file)}
SuccessExitStatus=21
StandardOutput=null
""", "zfsglacier-status.timer": """[Unit]
Description=zfsglacier: status metrics every 15 minutes

[Timer]
OnCalendar=*:0/15
Persistent=true

[Install]
WantedBy=timers.target
"""}


def cron_lines(jobs, config_file, bin_dir=None):
    lines = ["# zfsglacier jobs (zg-units --cron): /etc/cron.d format; each command's own lock keeps runs of a",
             "# dataset from overlapping, and SIGTERM makes it clean up", "SHELL=/bin/sh",
             f"ZG_CONFIG={os.path.abspath(config_file)}"]
    for job in jobs:
        for kind in _kinds(job):
            cmd, key, default, _ = KINDS[kind]
            schedule = job.get(key, default)
            if schedule not in CRON:
                raise UsageError(f"[jobs.{job.name}] {key} = {schedule!r}: cron takes {', '.join(CRON)} here "
                                 f"(a systemd calendar expression needs the timers: zg-units without --cron)")
            extra = f" --max-cost {job.get('drill_max_cost')}" if kind == "drill" and job.get("drill_max_cost") else ""
            lines.append(f"{CRON[schedule]} root {command(cmd, bin_dir)} --job {job.name}{extra}")
    return "\n".join(lines) + "\n"


def _write(path, text):
    try:
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(f"{path}.tmp", path)
    except OSError as err:
        raise OutputClosedError(f"cannot write {path}: {err.strerror}") from None


def main(argv=None):
    return run("zg-units", body, argv)
