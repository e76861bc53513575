"""Rows measured in this session, the issues' targets computed from them, and the markdown report.

Every benchmark adds a Row (``measure`` runs the rounds and adds it); at the end of the session
conftest.py calls ``write()``, which renders ``.make/bench.md``: the machine, then one part per
issue with rows (the filters; transfers, issue 3; chains, issue 4), each with its table and
"meets"/"misses" for each of its targets.  Nothing here asserts: the numbers are reported, not enforced.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field

from . import procs
from .procs import Result

MiB = 1 << 20
RSS_LIMIT_MIB = 128
CORES_BUSY_SHARE = 0.8  # "both cores busy": stage CPU / wall >= 0.8 x the cores we may use
SAME_RATIO = 1.01  # zg's output may be at most 1 % larger than zstd|openssl's to count as "the same ratio"
RECIPE_SPEEDUP = 20  # issue 14: ">= 20x the 2013 recipe" (the recipe's speed depends on the data: 10-24 MB/s)
DEC_SMALL = 0.9  # issue 14: zg-decrypt >= 0.9x the reference at ~0.5 GB (start-up weighs there), 1.0x at >= 4 GB
RSS_SAME = (8.0, 0.10)  # "independent of stream size": 4 GB peak within 8 MiB or 10 % of the 512 MB peak

# keys of the rows the targets refer to
RECIPE_ENC, RECIPE_DEC = "enc/recipe-2013", "dec/recipe-2013"
REF_ENC, REF_DEC = "enc/zstd-openssl", "dec/zstd-openssl"
ZG_ENC, ZG_DEC = "enc/zg-default", "dec/zg"
ZG_HIGH = "enc/zg-high"
ZG_ENC_NOCHECK = "enc/zg-no-stream-check"
ZG_ENC_BIG, ZG_DEC_BIG = "mem/zg-encrypt-big", "mem/zg-decrypt-big"
REF_DEC_BIG = "mem/zstd-openssl-decrypt-big"
# the same roles on each corpus (issue 14: the encrypt targets hold on every corpus)
MAIN = {"recipe_enc": RECIPE_ENC, "ref_enc": REF_ENC, "zg_enc": ZG_ENC, "zg_high": ZG_HIGH,
        "ref_dec": REF_DEC, "zg_dec": ZG_DEC}
MIX2 = {role: f"mix2/{name}" for role, name in (
    ("recipe_enc", "recipe-2013"), ("ref_enc", "zstd-openssl"), ("zg_enc", "zg-default"), ("zg_high", "zg-high"),
    ("ref_dec", "dec-zstd-openssl"), ("zg_dec", "dec-zg"))}
HIGH_LEVEL = 9  # zstd long-distance mode (see zg-encrypt --help)

# transfers (issue 3): the same part size and concurrency for every client
PART_MIB, JOBS = 16, 4
TRANSFER_BOUND_MIB = 60 + 2 * (JOBS + 1) * PART_MIB  # zg-upload --help: "60 MiB + 2 x (JOBS + 1) x part size"
UP_ZG, UP_AWS, UP_RCLONE = "up/zg-upload", "up/aws", "up/rclone"
UP_AWS_SHA = "up/aws-sha256"  # awscli asked for the same per-part checksum as zg (S3's work differs by algorithm)
DOWN_ZG, DOWN_AWS = "down/zg-fetch", "down/aws"
# a real S3 server (issue 12): Ceph RGW, each zg row against the awscli row of the same direction
RGW_UP_ZG, RGW_UP_AWS = "rgw/zg-upload", "rgw/aws-upload"
RGW_DOWN_ZG, RGW_DOWN_AWS = "rgw/zg-fetch", "rgw/aws-fetch"
RGW_FILE_ZG, RGW_FILE_AWS = "rgw/zg-fetch-file", "rgw/aws-fetch-file"
RGW_PAIRS = {RGW_UP_ZG: RGW_UP_AWS, RGW_DOWN_ZG: RGW_DOWN_AWS, RGW_FILE_ZG: RGW_FILE_AWS}
XMEM_UP_FLOOR, XMEM_DOWN_FLOOR = "xmem/zg-upload-floor", "xmem/zg-fetch-floor"
XMEM_SIZES = ("1gb", "4gb")  # xmem/zg-upload-1gb, xmem/zg-fetch-4gb, ...
# chains (issue 4)
CHAIN_SEND, CHAIN_BACKUP = "chain/zfs-send", "chain/zg-backup"
CHAIN_RECV, CHAIN_RESTORE = "chain/zfs-receive", "chain/zg-restore"
CHAIN_NATIVE_BACKUP, CHAIN_NATIVE_RESTORE = "chain/native-backup", "chain/native-restore"  # issue 14
CHAIN_BACKUP_S3, CHAIN_NATIVE_BACKUP_S3 = "chain/zg-backup-s3", "chain/native-backup-s3"
CHAIN_RESTORE_S3, CHAIN_NATIVE_RESTORE_S3 = "chain/zg-restore-s3", "chain/native-restore-s3"
SCALE_BOUND_MIB = 256  # README "Speed and memory": zg-backup / zg-restore to and from file://, any size
CHAIN_OVERHEAD_MAX = None  # the issue states no bound for the overhead ratios: set one to get a verdict

SECTIONS = {
    "ref": "Reference: moving and compressing the stream, no encryption",
    "enc": "Encrypt: ZFS stream -> archive",
    "dec": "Decrypt: archive -> ZFS stream",
    "mem": "Memory at scale: the same filters on the stream repeated 8 times",
    "mix2": "The second corpus (Python libraries, docs, SQL, logs, compressed files): encrypt and decrypt",
    "lvl": "Exploratory (ZG_BENCH_LEVELS=1): zg-encrypt levels and the 2013 decrypt with bzip2",
    "up": "Upload: archive from stdin to S3 (STANDARD)",
    "down": "Download: S3 object to stdout",
    "cold": "Cold: a DEEP_ARCHIVE object, thawed then fetched",
    "xmem": "Memory: zg-upload --raw / zg-fetch of large inputs",
    "chain": "Chains on real ZFS (zfs-fuse): one full backup / restore of the corpus dataset",
    "scale": "Memory at scale (issue 14): one full zg-backup / zg-restore of datasets of 1, 4 and 16 GB",
    "rgw": "S3 on Ceph RGW: upload from stdin, fetch to a pipe and to a file",
}
PARTS = {  # part of the report -> its sections
    "filters": ("ref", "enc", "dec", "mem", "mix2", "lvl"),
    "transfers": ("up", "down", "cold", "xmem"),
    "chains": ("chain", "scale"),
    "rgw": ("rgw",),
}


@dataclass
class Row:
    key: str  # section/name
    label: str
    command: str
    plain_bytes: int  # bytes the row moves: ZFS stream (filters, chains) or object bytes (transfers)
    archive_bytes: int | None  # encrypted/compressed size: output for encrypt rows, input for decrypt rows
    results: list[Result] = field(default_factory=list)
    helper: str = ""  # what Result.helper_cpu measured ("moto", "zfs-fuse"), if anything

    @property
    def section(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def best(self) -> Result:
        return min(self.results, key=lambda r: r.wall)

    @property
    def mbps(self) -> float:
        return self.plain_bytes / self.best.wall / 1e6

    @property
    def archive_share(self) -> float | None:
        """Archive bytes per stream byte (rows over 8x the stream compare with rows over 1x)."""
        return None if self.archive_bytes is None else self.archive_bytes / self.plain_bytes

    def extra_info(self) -> dict:
        return {"row": self.key, "label": self.label, "command": self.command, "plain_bytes": self.plain_bytes,
                "archive_bytes": self.archive_bytes, "mb_per_s": round(self.mbps, 2), "helper": self.helper,
                "rounds": [r.as_dict() for r in self.results]}


ROWS: dict[str, Row] = {}
CONTEXT: dict = {}  # corpus info, harness floor, server and tool versions: filled by the fixtures


def add(row: Row) -> Row:
    ROWS[row.key] = row
    return row


def measure(benchmark, key: str, label: str, command: str, stages, *, rounds: int,
            plain_bytes: int | None = None, archive_bytes: int | None = None, expect_out: int | None = None,
            setup=None, after=None, helper: str = "", **run_kw) -> Row:
    """Time ``rounds`` runs of a pipeline (procs.run_pipeline with ``run_kw``) and add the row.

    ``stages``: a list of argv lists, or a function returning one, called after ``setup`` in each round
    (when an argument is known only then).  ``setup()`` runs before each round and ``after(result)``
    after it, both unmeasured (clean a destination, check an output).  ``plain_bytes`` defaults to the bytes fed in; ``archive_bytes``
    to the first round's output.  The only assertion: every round delivers ``expect_out`` bytes."""
    results = []

    def once():
        res = procs.run_pipeline(stages() if callable(stages) else stages, **run_kw)
        results.append(res)
        if after is not None:
            after(res)
        return res

    benchmark.group = SECTIONS[key.split("/")[0]].split(":")[0]
    benchmark.pedantic(once, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    for res in results:
        if expect_out is not None:
            assert res.bytes_out == expect_out, f"{label}: {res.bytes_out} bytes out, expected {expect_out}"
    row = add(Row(key, label, command, results[0].bytes_in if plain_bytes is None else plain_bytes,
                  results[0].bytes_out if archive_bytes is None else archive_bytes, results, helper))
    benchmark.extra_info.update(row.extra_info())
    return row


# ---------------------------------------------------------------- machine


def _first_line(argv) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def machine() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / (1 << 20)
    except (OSError, ValueError, IndexError):
        mem_gib = 0.0
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_flags = next((line for line in f if line.startswith("flags")), "").split()
        flags = ", ".join(x for x in ("aes", "vaes", "sha_ni", "avx2") if x in cpu_flags)
    except OSError:
        pass
    try:
        import zstandard
        libzstd = "python-zstandard %s (libzstd %s)" % (zstandard.__version__, ".".join(map(str, zstandard.ZSTD_VERSION)))
    except ImportError:
        libzstd = "python-zstandard missing"
    zstd = _first_line(["zstd", "--version"]).replace("*", "").strip()
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu": model, "cpu_flags": flags,
        "mem_gib": round(mem_gib, 1), "kernel": platform.release(), "python": platform.python_version(),
        "zstd": zstd, "libzstd": libzstd, "openssl": _first_line(["openssl", "version"]),
        "pbzip2": _first_line(["pbzip2", "--version"]), "loadavg": os.getloadavg(),
    }


# ---------------------------------------------------------------- targets


def _ratio(a, b):
    return a / b if a is not None and b else None


def _verdict(ok) -> str:
    return "n/a" if ok is None else ("**meets**" if ok else "**MISSES**")


def filter_targets() -> list[tuple[str, str, str]]:
    """[(target, measured, verdict)] for every target of the filters' issue that this session can judge."""
    R = ROWS.get
    out = []
    nproc = len(os.sched_getaffinity(0))

    def speed(a, b):
        return _ratio(R(a).mbps, R(b).mbps) if R(a) and R(b) else None

    def size(a, b):
        return _ratio(R(a).archive_share, R(b).archive_share) if R(a) and R(b) else None

    def add_t(text, value, fmt, ok):
        out.append((text, "not measured" if value is None else fmt.format(value), _verdict(None if value is None else ok)))

    for roles, where in ((MAIN, "corpus 1"), (MIX2, "corpus 2")):
        k = roles.get
        v = speed(k("zg_enc"), k("recipe_enc"))
        add_t(f"{where}: default zg-encrypt >= {RECIPE_SPEEDUP:.0f}x the 2013 recipe's throughput", v, "{:.1f}x",
              v is not None and v >= RECIPE_SPEEDUP)
        v = size(k("zg_enc"), k("recipe_enc"))
        add_t(f"{where}: default zg-encrypt output <= 1.10x the 2013 recipe's size", v, "{:.3f}x",
              v is not None and v <= 1.10)
        v = size(k("zg_high"), k("recipe_enc"))
        add_t(f"{where}: zg-encrypt -l {HIGH_LEVEL} output <= the 2013 recipe's size", v, "{:.3f}x",
              v is not None and v <= 1.0)
        v = speed(k("zg_high"), k("recipe_enc"))
        add_t(f"{where}: zg-encrypt -l {HIGH_LEVEL} >= 4x the 2013 recipe's throughput", v, "{:.1f}x",
              v is not None and v >= 4)
        v = speed(k("zg_enc"), k("ref_enc"))
        add_t(f"{where}: zg-encrypt >= `zstd -T0 -3 | openssl enc -aes-256-ctr` throughput", v, "{:.2f}x",
              v is not None and v >= 1)
        v = size(k("zg_enc"), k("ref_enc"))
        add_t(f"{where}: ... at <= {SAME_RATIO:.2f}x its size", v, "{:.4f}x", v is not None and v <= SAME_RATIO)
        v = speed(k("zg_dec"), k("ref_dec"))
        gb = R(k("zg_dec")).plain_bytes / 1e9 if R(k("zg_dec")) else 0
        add_t(f"{where}: zg-decrypt (full verification) >= {DEC_SMALL:.1f}x `openssl enc -d | zstd -d` at "
              f"{gb:.1f} GB", v, "{:.2f}x", v is not None and v >= DEC_SMALL)
    v = speed(ZG_ENC, ZG_ENC_NOCHECK)
    add_t("the ZFS stream check costs < 5% of zg-encrypt's throughput (vs --no-stream-check)", v,
          "{:.3f}x", v is not None and v >= 0.95)
    v = speed(ZG_DEC_BIG, REF_DEC_BIG)
    add_t("zg-decrypt (full verification) >= 1.0x `openssl enc -d | zstd -d` at >= 4 GB (the 8x stream)", v,
          "{:.2f}x", v is not None and v >= 1)
    for small, big, name in ((ZG_ENC, ZG_ENC_BIG, "zg-encrypt"), (ZG_DEC, ZG_DEC_BIG, "zg-decrypt")):
        a = R(small).best.peak_rss_mib if R(small) else None
        b = R(big).best.peak_rss_mib if R(big) else None
        peak = max(x for x in (a, b) if x is not None) if (a or b) else None
        sizes = " / ".join("-" if r is None else f"{r.plain_bytes / 1e9:.2f} GB: {x:.1f} MiB"
                           for r, x in ((R(small), a), (R(big), b)))
        out.append((f"{name} peak RSS < {RSS_LIMIT_MIB} MiB (512 MB and 4 GB streams)", sizes,
                    _verdict(None if peak is None else peak < RSS_LIMIT_MIB)))
        if a is not None and b is not None:
            ok = abs(b - a) <= max(RSS_SAME[0], RSS_SAME[1] * a)
            out.append((f"{name} peak RSS independent of stream size (within {RSS_SAME[0]:.0f} MiB or "
                        f"{RSS_SAME[1]:.0%})", f"{b - a:+.1f} MiB", _verdict(ok)))
    for key in (ZG_ENC, ZG_ENC_BIG, ZG_HIGH):  # the long run shows the steady state (start-up is ~0.25 s on one core)
        if R(key):
            cb = R(key).best.cores_busy
            out.append((f"all {nproc} cores busy during compression ({R(key).label}: CPU / wall >= "
                        f"{CORES_BUSY_SHARE * nproc:.1f})", f"{cb:.2f} cores", _verdict(cb >= CORES_BUSY_SHARE * nproc)))
    levels = sorted((r for r in ROWS.values() if r.section == "lvl" and r.key.startswith("lvl/zg-l")),
                    key=lambda r: int(r.key.rsplit("l", 1)[1]))
    if levels and R(RECIPE_ENC):
        fit = [r for r in levels if size(r.key, RECIPE_ENC) <= 1.0 and speed(r.key, RECIPE_ENC) >= 4]
        out.append(("exploratory: lowest zstd level with output <= the recipe's and >= 4x its speed",
                    ", ".join(f"l{r.key.rsplit('l', 1)[1]}: {size(r.key, RECIPE_ENC):.3f}x size, "
                              f"{speed(r.key, RECIPE_ENC):.1f}x speed" for r in levels),
                    f"**level {fit[0].key.rsplit('l', 1)[1]}**" if fit else "**none**"))
    return out


def _peaks(keys: list[str]) -> list[tuple[Row, float]]:
    return [(ROWS[k], ROWS[k].best.peak_rss_mib) for k in keys if k in ROWS]


def transfer_targets() -> list[tuple[str, str, str]]:
    """Issue 3: zg-upload / zg-fetch against awscli and rclone on the same moto server, and memory."""
    R = ROWS.get
    out = []

    def speed(a, b, text):
        v = _ratio(R(a).mbps, R(b).mbps) if R(a) and R(b) else None
        out.append((text, "not measured" if v is None else f"{v:.2f}x ({R(a).mbps:.0f} vs {R(b).mbps:.0f} MB/s)",
                    _verdict(None if v is None else v >= 1.0)))

    speed(UP_ZG, UP_AWS, "zg-upload from stdin >= 1.0x `aws s3 cp - s3://...` throughput")
    speed(UP_ZG, UP_RCLONE, "zg-upload from stdin >= 1.0x `rclone rcat` throughput")
    if R(UP_ZG) and R(UP_AWS_SHA):
        v = _ratio(R(UP_ZG).mbps, R(UP_AWS_SHA).mbps)
        out.append(("... and against `aws s3 cp --checksum-algorithm SHA256` (the same checksum for the server to "
                    "compute as zg asks for; awscli's default is CRC32)",
                    f"{v:.2f}x ({R(UP_ZG).mbps:.0f} vs {R(UP_AWS_SHA).mbps:.0f} MB/s)", "reported (no target)"))
    speed(DOWN_ZG, DOWN_AWS, "zg-fetch >= 1.0x `aws s3 cp s3://... -` throughput")
    for name, floor_key in (("zg-upload", XMEM_UP_FLOOR), ("zg-fetch", XMEM_DOWN_FLOOR)):
        verb = "upload" if name == "zg-upload" else "fetch"
        peaks = _peaks([f"xmem/{name}-{size}" for size in XMEM_SIZES])
        floor = R(floor_key).best.peak_rss_mib if R(floor_key) else None
        shown = " / ".join(f"{r.plain_bytes / 1e9:.2f} GB: {x:.0f} MiB" for r, x in peaks) or "not measured"
        top = max((x for _, x in peaks), default=None)
        out.append((f"{name} peak RSS <= the stated bound, 60 MiB + 2 x (jobs + 1) x part size = {TRANSFER_BOUND_MIB} MiB "
                    f"({JOBS} jobs, {PART_MIB} MiB parts)", shown,
                    _verdict(None if top is None else top <= TRANSFER_BOUND_MIB)))
        if top is not None and floor is not None:
            above = " / ".join(f"{r.plain_bytes / 1e9:.2f} GB: +{x - floor:.0f} MiB" for r, x in peaks)
            out.append((f"... counting only what the {verb} adds to the command's own footprint "
                        f"({floor:.0f} MiB for a 1 MiB input)", above,
                        _verdict(top - floor <= TRANSFER_BOUND_MIB - 60)))
    return out


def chain_targets() -> list[tuple[str, str, str]]:
    """Issue 4: zg-backup / zg-restore wall time over the bare zfs send / receive of the same snapshot."""
    R = ROWS.get
    out = []
    for zg_key, bare_key, text in ((CHAIN_BACKUP, CHAIN_SEND, "zg-backup to file:// over bare `zfs send > /dev/null`"),
                                   (CHAIN_RESTORE, CHAIN_RECV, "zg-restore from file:// over bare `zfs receive < "
                                                               "stream`")):
        v = _ratio(R(zg_key).best.wall, R(bare_key).best.wall) if R(zg_key) and R(bare_key) else None
        bound = "" if CHAIN_OVERHEAD_MAX is None else f" <= {CHAIN_OVERHEAD_MAX:.2f}x"
        measured = ("not measured" if v is None else
                    f"{v:.2f}x ({R(zg_key).best.wall:.2f} s vs {R(bare_key).best.wall:.2f} s)")
        if v is None or CHAIN_OVERHEAD_MAX is None:
            verdict = "n/a" if v is None else "reported (no bound stated)"
        else:
            verdict = _verdict(v <= CHAIN_OVERHEAD_MAX)
        out.append((f"overhead: {text} (wall-time ratio){bound}", measured, verdict))
    for zg_key, native_key, text in (
            (CHAIN_BACKUP, CHAIN_NATIVE_BACKUP, "zg-backup to file:// >= 1.0x `zfs send | zstd -T0 -3 | openssl enc "
                                               "> file` (issue 14)"),
            (CHAIN_RESTORE, CHAIN_NATIVE_RESTORE, "zg-restore from file:// >= 1.0x `openssl enc -d < file | zstd -d | "
                                                  "zfs receive` (issue 14)"),
            (CHAIN_BACKUP_S3, CHAIN_NATIVE_BACKUP_S3, "zg-backup to S3 (moto) >= 1.0x `zfs send | zstd -T0 -3 | "
                                                     "openssl enc | aws s3 cp -` (issue 14)"),
            (CHAIN_RESTORE_S3, CHAIN_NATIVE_RESTORE_S3, "zg-restore from S3 (moto) >= 1.0x `aws s3 cp - | openssl "
                                                        "enc -d | zstd -d | zfs receive` (issue 14)")):
        v = _ratio(R(native_key).best.wall, R(zg_key).best.wall) if R(zg_key) and R(native_key) else None
        measured = ("not measured" if v is None else
                    f"{v:.2f}x ({R(zg_key).best.wall:.2f} s vs {R(native_key).best.wall:.2f} s)")
        out.append((f"speed: {text}", measured, _verdict(None if v is None else v >= 1.0)))
    for verb in ("backup", "restore"):
        peaks = sorted(((r.plain_bytes, r.best.peak_rss_mib) for r in ROWS.values()
                        if r.key.startswith(f"scale/zg-{verb}-")))
        if not peaks:
            continue
        shown = " / ".join(f"{b / 1e9:.1f} GB: {m:.0f} MiB" for b, m in peaks)
        top, low = max(m for _, m in peaks), peaks[0][1]
        out.append((f"zg-{verb} peak RSS < {SCALE_BOUND_MIB} MiB (the README's bound) at every size", shown,
                    _verdict(top < SCALE_BOUND_MIB)))
        out.append((f"zg-{verb} peak RSS independent of size (largest within {RSS_SAME[0]:.0f} MiB or "
                    f"{RSS_SAME[1]:.0%} of the smallest's)", f"{top - low:+.1f} MiB",
                    _verdict(top - low <= max(RSS_SAME[0], RSS_SAME[1] * low))))
    for what, stages in (("backup", ((CHAIN_SEND, "zfs send"), (ZG_ENC, "compress + encrypt (zg-encrypt)"),
                                     (UP_ZG, "transfer (zg-upload to moto)"))),
                         ("restore", ((DOWN_ZG, "transfer (zg-fetch from moto)"), (ZG_DEC, "decrypt + decompress "
                                                                                            "(zg-decrypt)"),
                                      (CHAIN_RECV, "zfs receive")))):
        rates = [(R(key).mbps, name) for key, name in stages if R(key)]
        if rates:
            slowest = min(rates)
            out.append((f"where a {what}'s time goes: each stage alone, MB/s of what it moves (the slowest bounds the whole)",
                        "; ".join(f"{name} {rate:.0f}" for rate, name in rates) + f": slowest is {slowest[1]}",
                        "reported"))
    return out


# ---------------------------------------------------------------- markdown


def _cell(text: str) -> str:
    """Text for a markdown table cell: pipes escaped (a backslash-pipe is left as is)."""
    return text.replace("\\|", "|").replace("|", "\\|")


def _fmt(v, spec, dash="-"):
    return dash if v is None else format(v, spec)


def filter_table() -> str:
    R = ROWS.get
    head = ("| row | MB/s | archive MB | size vs 2013 | speed vs 2013 | speed vs zstd\\|openssl | peak RSS MiB "
            "(per stage) | cores busy | others' load | rounds |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    lines = []
    for section in PARTS["filters"]:
        rows = [r for r in ROWS.values() if r.section == section]
        if not rows:
            continue
        lines.append(f"| **{SECTIONS[section]}** | | | | | | | | | |")
        for r in rows:
            b = r.best
            decrypting = r.section == "dec" or "dec" in r.key.split("/", 1)[1]
            if r.section == "mix2":
                recipe, ref = (None, MIX2["ref_dec"]) if decrypting else (MIX2["recipe_enc"], MIX2["ref_enc"])
            else:
                recipe, ref = (RECIPE_DEC, REF_DEC) if decrypting else (RECIPE_ENC, REF_ENC)
            if r.key == ZG_DEC_BIG and R(REF_DEC_BIG):
                ref = REF_DEC_BIG  # like with like: the 8x stream
            base = recipe if not decrypting else None
            size_vs = _ratio(r.archive_share, R(base).archive_share) if base and R(base) else None
            speed_vs = _ratio(r.mbps, R(recipe).mbps) if recipe and R(recipe) else None
            ref_vs = _ratio(r.mbps, R(ref).mbps) if R(ref) else None
            rss = _rss(r)
            arch = None if r.archive_bytes is None else r.archive_bytes / 1e6
            lines.append(
                f"| {_cell(r.label)} | {r.mbps:.1f} | {_fmt(arch, '.1f')} | {_fmt(size_vs, '.3f')}"
                f"{'x' if size_vs else ''} | {_fmt(speed_vs, '.1f')}{'x' if speed_vs else ''} | "
                f"{_fmt(ref_vs, '.2f')}{'x' if ref_vs else ''} | {rss} | {b.cores_busy:.2f} | "
                f"{_fmt(b.others_cores, '.2f')} | {len(r.results)} |")
    return head + "\n" + "\n".join(lines)


def _rss(r: Row) -> str:
    return " \\| ".join(f"{s.name} {s.rss_mib:.0f}" for s in r.best.stages)


def _cores(r: Row) -> str:
    return f"{r.best.cores_busy:.2f}"


def _helper_cores(r: Row) -> str:
    return _fmt(r.best.helper_cores, ".2f")


def transfer_table() -> str:
    """Issue 3's rows: MB/s of object bytes, ratios to awscli (same direction) and rclone (upload)."""
    R = ROWS.get
    head = ("| row | MB/s | MB moved | vs aws s3 cp | vs rclone rcat | peak RSS MiB (per stage) | client cores | "
            "moto cores | others' load | rounds |\n|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    lines = []
    for section in PARTS["transfers"]:
        rows = [r for r in ROWS.values() if r.section == section]
        if not rows:
            continue
        lines.append(f"| **{SECTIONS[section]}** | | | | | | | | | |")
        for r in rows:
            up = section == "up" or "upload" in r.key
            aws = R(UP_AWS if up else DOWN_AWS)
            vs_aws = _ratio(r.mbps, aws.mbps) if aws and section in ("up", "down", "cold") else None
            vs_rclone = _ratio(r.mbps, R(UP_RCLONE).mbps) if up and R(UP_RCLONE) and section == "up" else None
            lines.append(
                f"| {_cell(r.label)} | {r.mbps:.1f} | {r.plain_bytes / 1e6:.1f} | {_fmt(vs_aws, '.2f')}"
                f"{'x' if vs_aws else ''} | {_fmt(vs_rclone, '.2f')}{'x' if vs_rclone else ''} | {_rss(r)} | "
                f"{_cores(r)} | {_helper_cores(r)} | {_fmt(r.best.others_cores, '.2f')} | {len(r.results)} |")
    return head + "\n" + "\n".join(lines)


def rgw_table() -> str:
    """Issue 12's rows: MB/s against Ceph RGW, each zg row's ratio to the awscli row of its direction."""
    head = ("| row | MB/s | MB moved | vs aws s3 cp | peak RSS MiB (per stage) | client cores | rgw cores | "
            "others' load | rounds |\n|---|---:|---:|---:|---|---:|---:|---:|---:|")
    lines = []
    for r in _part_rows("rgw"):
        aws = ROWS.get(RGW_PAIRS.get(r.key, ""))
        vs = _ratio(r.mbps, aws.mbps) if aws else None
        lines.append(f"| {_cell(r.label)} | {r.mbps:.1f} | {r.plain_bytes / 1e6:.1f} | {_fmt(vs, '.2f')}"
                     f"{'x' if vs else ''} | {_rss(r)} | {_cores(r)} | {_helper_cores(r)} | "
                     f"{_fmt(r.best.others_cores, '.2f')} | {len(r.results)} |")
    return head + "\n" + "\n".join(lines)


def rgw_targets() -> list[tuple[str, str, str]]:
    R = ROWS.get
    out = []
    for zg_key, aws_key, text in ((RGW_UP_ZG, RGW_UP_AWS, "zg-upload from stdin"),
                                  (RGW_DOWN_ZG, RGW_DOWN_AWS, "zg-fetch to a pipe"),
                                  (RGW_FILE_ZG, RGW_FILE_AWS, "zg-fetch -o FILE")):
        v = _ratio(R(zg_key).mbps, R(aws_key).mbps) if R(zg_key) and R(aws_key) else None
        out.append((f"{text} >= 1.0x `aws s3 cp` against RGW",
                    "not measured" if v is None else f"{v:.2f}x ({R(zg_key).mbps:.0f} vs {R(aws_key).mbps:.0f} MB/s)",
                    _verdict(None if v is None else v >= 1.0)))
    return out


def chain_table() -> str:
    """Issue 4's rows: wall time, stream MB/s, time over the bare zfs command of the same direction."""
    R = ROWS.get
    head = ("| row | wall s | stream MB/s | time vs bare zfs | peak RSS MiB (per stage) | client cores | "
            "zfs-fuse cores | others' load | rounds |\n|---|---:|---:|---:|---|---:|---:|---:|---:|")
    lines = []
    for section in PARTS["chains"]:
        rows = [r for r in ROWS.values() if r.section == section]
        if rows:
            lines.append(f"| **{SECTIONS[section]}** | | | | | | | | |")
        for r in rows:
            bare = None if section == "scale" else R(CHAIN_SEND if r.key in (CHAIN_SEND, CHAIN_BACKUP, CHAIN_NATIVE_BACKUP, CHAIN_BACKUP_S3,
                                             CHAIN_NATIVE_BACKUP_S3) else CHAIN_RECV)
            vs = _ratio(r.best.wall, bare.best.wall) if bare else None
            lines.append(
                f"| {_cell(r.label)} | {r.best.wall:.2f} | {r.mbps:.1f} | {_fmt(vs, '.2f')}{'x' if vs else ''} | "
                f"{_rss(r)} | {_cores(r)} | {_helper_cores(r)} | {_fmt(r.best.others_cores, '.2f')} | "
                f"{len(r.results)} |")
    return head + "\n" + "\n".join(lines)


NOISY_CORES = 0.25


def _noise_note(rows: list[Row]) -> list[str]:
    noisy = [r.label for r in rows if (r.best.others_cores or 0) > NOISY_CORES]
    if not noisy:
        return []
    return [f"**Noise:** {len(noisy)} of {len(rows)} rows ran while other processes used more than "
            f"{NOISY_CORES} cores ({'; '.join(_cell(x) for x in noisy)}): their speeds and the ratios built on "
            "them are not representative; run again on a quiet machine.", ""]


def _targets_table(rows: list[tuple[str, str, str]]) -> list[str]:
    return ["| target | measured | verdict |", "|---|---|---|",
            *(f"| {_cell(t)} | {_cell(v)} | {ok} |" for t, v, ok in rows), ""]


def _results(part: str, table: str, targets: list[tuple[str, str, str]]) -> list[str]:
    """What every part ends with: its table, a noise warning if any, and its targets."""
    return [table, "", *_noise_note(_part_rows(part)), "### Targets (from the numbers above; not assertions)", "",
            *_targets_table(targets)]


def _part_rows(part: str) -> list[Row]:
    return [r for r in ROWS.values() if r.section in PARTS[part]]


def _corpus_line(title: str, c: dict) -> str:
    comp = c.get("composition", {})
    total = sum(v["bytes"] for v in comp.values()) or 1
    mix = ", ".join(f"{k} {v['bytes'] / total:.0%}" for k, v in comp.items())
    return (f"**{title}:** one real `zfs send` stream ({c.get('zfs', 'zfs-fuse')}) of "
            f"{c.get('stream_bytes', 0) / 1e6:.1f} MB ({c.get('stream_bytes', 0) / MiB:.0f} MiB), recipe "
            f"{c.get('recipe', 'mixed')}: {mix}; seed {c.get('seed')}, sha256 {str(c.get('stream_sha256', ''))[:16]}... "
            "(benchmarks/corpus.py).")


def _filters_part() -> list[str]:
    second = CONTEXT.get("corpus2")
    return [
        "## Filters: zg-encrypt / zg-decrypt",
        "",
        _corpus_line("Corpus 1", CONTEXT.get("corpus") or {}),
        "",
        *([_corpus_line("Corpus 2", second), ""] if second else []),
        "MB/s = ZFS stream bytes (10^6) per second of wall time, best round; archive MB = encrypted size "
        "(output of an encrypt row, input of a decrypt row); ratios are against the 2013 recipe and "
        "`zstd -T0 -3 | openssl enc -aes-256-ctr` rows of the same direction in this run; peak RSS per "
        f"pipeline stage (includes a {CONTEXT.get('floor_mib', 0):.1f} MiB harness floor); cores busy = "
        "CPU seconds of all stages / wall; others' load = cores used meanwhile by other processes "
        "(noise: should be ~0 on a quiet machine).",
        "",
        *_results("filters", filter_table(), filter_targets()),
    ]


def _transfers_part() -> list[str]:
    t = CONTEXT.get("transfers") or {}
    return [
        "## Transfers (issue 3): zg-upload / zg-fetch against awscli and rclone",
        "",
        f"**Setup:** one moto S3 server ({t.get('moto', 'moto')}, its own process, 127.0.0.1) for every client; "
        f"{PART_MIB} MiB parts and {JOBS} transfers in flight for all: zg `--jobs {JOBS}` with `part_size` from a "
        f"config destination, awscli multipart_chunksize / multipart_threshold {PART_MIB} MiB and "
        f"max_concurrent_requests {JOBS} ({t.get('aws', 'aws')}), `rclone rcat --s3-chunk-size {PART_MIB}M "
        f"--s3-upload-concurrency {JOBS}` ({t.get('rclone', 'rclone')}). Upload input: "
        f"{t.get('input', 'the zg-encrypt archive of the corpus stream')}, fed from a file through a pipe; "
        "storage class STANDARD; before each upload round every object is deleted and the disk synced "
        "(`sync`: earlier rows' write-back would otherwise stall the server mid-round). "
        f"{t.get('notes', '')}",
        "",
        "MB/s = object bytes (10^6) per second of wall time (process start to last byte), best round; ratios are "
        "against the awscli row of the same direction and the rclone upload row of this run; client cores = "
        "CPU / wall of the client process(es); moto cores = the server's CPU / wall meanwhile (both clients "
        "share 2 cores with it); others' load excludes moto.",
        "",
        *_results("transfers", transfer_table(), transfer_targets()),
    ]


def _rgw_part() -> list[str]:
    t = CONTEXT.get("rgw") or {}
    return [
        "## S3 on a real server (issue 12): zg-upload / zg-fetch against awscli on Ceph RGW",
        "",
        f"**Setup:** one {t.get('rgw', 'radosgw')} (a mon, a memstore OSD, radosgw; 127.0.0.1; "
        f"tests/servers/ceph_rgw.py) for both clients, on the same 2 cores; {PART_MIB} MiB parts, {JOBS} in "
        f"flight, as the moto rows ({t.get('aws', 'aws')}); the zg-encrypt archive of the corpus, STANDARD. "
        "RGW lists no part checksums: zg-fetch checks the whole against the SHA-256 its catalog recorded at "
        "upload, hashing each byte once. rgw cores = radosgw's CPU / wall meanwhile.",
        "",
        *_results("rgw", rgw_table(), rgw_targets()),
    ]


def _chains_part() -> list[str]:
    ch = CONTEXT.get("chains") or {}
    return [
        "## Chains (issue 4): zg-backup / zg-restore against bare zfs send / receive",
        "",
        f"**Setup:** {ch.get('setup', 'a zfs-fuse dataset holding the corpus files')}",
        "",
        *([f"**Memory at scale:** {CONTEXT['scale']['setup']}", ""] if CONTEXT.get("scale") else []),
        "wall s = best round; stream MB/s = bytes of the snapshot's `zfs send` stream per second; time vs bare "
        "zfs = wall over the bare command of the same direction (the overhead ratio); zfs-fuse cores = the "
        "daemon's CPU / wall (it does the pool work of every row); client cores include the `zfs` processes "
        "zg-backup and zg-restore start.",
        "",
        *_results("chains", chain_table(), chain_targets()),
    ]


def render() -> str:
    m = machine()
    parts = [
        f"# zfsglacier benchmarks ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"**Machine:** {m['nproc']} cores usable ({m['cpu_count']} online), {m['cpu']} [{m['cpu_flags']}], "
        f"{m['mem_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}, {m['zstd']}, {m['libzstd']}, "
        f"{m['openssl']}, {m['pbzip2']}. Load average at the end: "
        + " ".join(f"{x:.2f}" for x in m["loadavg"]) + ".",
        "",
    ]
    for part, body in (("filters", _filters_part), ("transfers", _transfers_part), ("rgw", _rgw_part),
                       ("chains", _chains_part)):
        if _part_rows(part):
            parts += body()
    return "\n".join(parts)


def write(path) -> str:
    text = render()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


if __name__ == "__main__":  # pragma: no cover
    print(machine(), file=sys.stderr)
