"""Rows measured in this session, the issue's targets computed from them, and the markdown report.

Every benchmark adds a Row; at the end of the session conftest.py calls ``write()``, which renders
``.make/bench.md``: the machine, the corpus, one table of all rows, and "meets"/"misses" for each
target of the issue.  Nothing here asserts: the numbers are reported, not enforced.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .procs import Result

MiB = 1 << 20
RSS_LIMIT_MIB = 128
CORES_BUSY_SHARE = 0.8  # "both cores busy": stage CPU / wall >= 0.8 x the cores we may use
SAME_RATIO = 1.01  # zg's output may be at most 1 % larger than zstd|openssl's to count as "the same ratio"
RSS_SAME = (8.0, 0.10)  # "independent of stream size": 4 GB peak within 8 MiB or 10 % of the 512 MB peak

# keys of the rows the targets refer to
RECIPE_ENC, RECIPE_DEC = "enc/recipe-2013", "dec/recipe-2013"
REF_ENC, REF_DEC = "enc/zstd-openssl", "dec/zstd-openssl"
ZG_ENC, ZG_DEC = "enc/zg-default", "dec/zg"
ZG_HIGH = "enc/zg-l12"
ZG_ENC_BIG, ZG_DEC_BIG = "mem/zg-encrypt-big", "mem/zg-decrypt-big"
HIGH_LEVEL = 12

SECTIONS = {
    "ref": "Reference: moving and compressing the stream, no encryption",
    "enc": "Encrypt: ZFS stream -> archive",
    "dec": "Decrypt: archive -> ZFS stream",
    "mem": "Memory at scale: the same filters on the stream repeated 8 times",
    "lvl": "Exploratory (ZG_BENCH_LEVELS=1): zg-encrypt levels and the 2013 decrypt with bzip2",
}


@dataclass
class Row:
    key: str  # section/name
    label: str
    command: str
    plain_bytes: int  # ZFS stream bytes the row moves (in for encrypt, out for decrypt)
    archive_bytes: int | None  # encrypted/compressed size: output for encrypt rows, input for decrypt rows
    results: list[Result] = field(default_factory=list)

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
                "archive_bytes": self.archive_bytes, "mb_per_s": round(self.mbps, 2),
                "rounds": [r.as_dict() for r in self.results]}


ROWS: dict[str, Row] = {}
CONTEXT: dict = {}  # corpus info, harness floor: filled by the fixtures


def add(row: Row) -> Row:
    ROWS[row.key] = row
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


def targets() -> list[tuple[str, str, str]]:
    """[(target, measured, verdict)] for every target of the issue that this session can judge."""
    R = ROWS.get
    out = []
    nproc = len(os.sched_getaffinity(0))

    def speed(a, b):
        return _ratio(R(a).mbps, R(b).mbps) if R(a) and R(b) else None

    def size(a, b):
        return _ratio(R(a).archive_share, R(b).archive_share) if R(a) and R(b) else None

    def add_t(text, value, fmt, ok):
        out.append((text, "not measured" if value is None else fmt.format(value), _verdict(None if value is None else ok)))

    v = speed(ZG_ENC, RECIPE_ENC)
    add_t("default zg-encrypt >= 25x the 2013 recipe's throughput", v, "{:.1f}x", v is not None and v >= 25)
    v = size(ZG_ENC, RECIPE_ENC)
    add_t("default zg-encrypt output <= 1.10x the 2013 recipe's size", v, "{:.3f}x", v is not None and v <= 1.10)
    v = size(ZG_HIGH, RECIPE_ENC)
    add_t(f"zg-encrypt -l {HIGH_LEVEL} output <= the 2013 recipe's size", v, "{:.3f}x", v is not None and v <= 1.0)
    v = speed(ZG_HIGH, RECIPE_ENC)
    add_t(f"zg-encrypt -l {HIGH_LEVEL} >= 4x the 2013 recipe's throughput", v, "{:.1f}x", v is not None and v >= 4)
    v = speed(ZG_ENC, REF_ENC)
    add_t("zg-encrypt >= `zstd -T0 -3 | openssl enc -aes-256-ctr` throughput", v, "{:.2f}x", v is not None and v >= 1)
    v = size(ZG_ENC, REF_ENC)
    add_t(f"... at the same ratio (zg output <= {SAME_RATIO:.2f}x the reference's)", v, "{:.4f}x",
          v is not None and v <= SAME_RATIO)
    v = speed(ZG_DEC, REF_DEC)
    add_t("zg-decrypt >= `openssl enc -d -aes-256-ctr | zstd -d` throughput", v, "{:.2f}x", v is not None and v >= 1)
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


# ---------------------------------------------------------------- markdown


def _cell(text: str) -> str:
    """Text for a markdown table cell: pipes escaped (a backslash-pipe is left as is)."""
    return text.replace("\\|", "|").replace("|", "\\|")


def _fmt(v, spec, dash="-"):
    return dash if v is None else format(v, spec)


def table() -> str:
    R = ROWS.get
    head = ("| row | MB/s | archive MB | size vs 2013 | speed vs 2013 | speed vs zstd\\|openssl | peak RSS MiB "
            "(per stage) | cores busy | others' load | rounds |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    lines = []
    for section, title in SECTIONS.items():
        rows = [r for r in ROWS.values() if r.section == section]
        if not rows:
            continue
        lines.append(f"| **{title}** | | | | | | | | | |")
        for r in rows:
            b = r.best
            decrypting = r.section == "dec" or "decrypt" in r.key or r.key.startswith("lvl/dec")
            recipe, ref = (RECIPE_DEC, REF_DEC) if decrypting else (RECIPE_ENC, REF_ENC)
            size_vs = None if decrypting else _ratio(r.archive_share, R(RECIPE_ENC).archive_share if R(RECIPE_ENC) else None)
            speed_vs = _ratio(r.mbps, R(recipe).mbps) if R(recipe) else None
            ref_vs = _ratio(r.mbps, R(ref).mbps) if R(ref) else None
            rss = " \\| ".join(f"{s.name} {s.rss_mib:.0f}" for s in b.stages)
            arch = None if r.archive_bytes is None else r.archive_bytes / 1e6
            lines.append(
                f"| {_cell(r.label)} | {r.mbps:.1f} | {_fmt(arch, '.1f')} | {_fmt(size_vs, '.3f')}"
                f"{'x' if size_vs else ''} | {_fmt(speed_vs, '.1f')}{'x' if speed_vs else ''} | "
                f"{_fmt(ref_vs, '.2f')}{'x' if ref_vs else ''} | {rss} | {b.cores_busy:.2f} | "
                f"{_fmt(b.others_cores, '.2f')} | {len(r.results)} |")
    return head + "\n" + "\n".join(lines)


NOISY_CORES = 0.25


def _noise_note() -> list[str]:
    noisy = [r.label for r in ROWS.values() if (r.best.others_cores or 0) > NOISY_CORES]
    if not noisy:
        return []
    return [f"**Noise:** {len(noisy)} of {len(ROWS)} rows ran while other processes used more than "
            f"{NOISY_CORES} cores ({'; '.join(_cell(x) for x in noisy)}): their speeds and the ratios built on "
            "them are not representative; run again on a quiet machine.", ""]


def render() -> str:
    m = machine()
    c = CONTEXT.get("corpus") or {}
    comp = c.get("composition", {})
    total = sum(v["bytes"] for v in comp.values()) or 1
    mix = ", ".join(f"{k} {v['bytes'] / total:.0%}" for k, v in comp.items())
    parts = [
        f"# zfsglacier benchmarks ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"**Machine:** {m['nproc']} cores usable ({m['cpu_count']} online), {m['cpu']} [{m['cpu_flags']}], "
        f"{m['mem_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}, {m['zstd']}, {m['libzstd']}, "
        f"{m['openssl']}, {m['pbzip2']}. Load average at the end: "
        + " ".join(f"{x:.2f}" for x in m["loadavg"]) + ".",
        "",
        f"**Corpus:** one real `zfs send` stream ({c.get('zfs', 'zfs-fuse')}) of {c.get('stream_bytes', 0) / 1e6:.1f} MB "
        f"({c.get('stream_bytes', 0) / MiB:.0f} MiB): {mix}; seed {c.get('seed')}, "
        f"sha256 {str(c.get('stream_sha256', ''))[:16]}... (benchmarks/corpus.py).",
        "",
        "MB/s = ZFS stream bytes (10^6) per second of wall time, best round; archive MB = encrypted size "
        "(output of an encrypt row, input of a decrypt row); ratios are against the 2013 recipe and "
        "`zstd -T0 -3 | openssl enc -aes-256-ctr` rows of the same direction in this run; peak RSS per "
        f"pipeline stage (includes a {CONTEXT.get('floor_mib', 0):.1f} MiB harness floor); cores busy = "
        "CPU seconds of all stages / wall; others' load = cores used meanwhile by other processes "
        "(noise: should be ~0 on a quiet machine).",
        "",
        table(),
        "",
        *_noise_note(),
        "## Targets (from the numbers above; not assertions)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *(f"| {_cell(t)} | {_cell(v)} | {ok} |" for t, v, ok in targets()),
        "",
    ]
    return "\n".join(parts)


def write(path) -> str:
    text = render()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


if __name__ == "__main__":  # pragma: no cover
    print(machine(), file=sys.stderr)
