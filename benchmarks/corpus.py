"""The benchmark corpus: one real `zfs send` stream of mixed content, built once and cached.

Composition (by bytes of file data, before ZFS metadata):

    sql     35%  a generated mysqldump-style dump (extended INSERTs, several tables, hashes, dates)
    text    25%  real text from /usr/share/doc (.gz unpacked) and /usr/share/common-licenses, up to
                 half of the share, the rest generated prose (an order-2 word Markov chain trained
                 on that text, so it reads like the docs without repeating them verbatim)
    binary  30%  ELF executables and libraries from /usr/lib and /usr/bin (a seeded sample)
    random  10%  incompressible files (stand-ins for photos, archives, already-compressed data)

Files of all kinds are created in a seeded shuffled order, so the send stream (which follows
object creation order) interleaves them as a real dataset would.  Everything is deterministic for
a given machine (seed, sorted directory walks); the binaries and docs depend on what is
installed, which is why corpus.json records what went in.

The stream is written to ``$ZG_BENCH_DIR/mb<N>/stream.zfs`` (default dir
``/var/tmp/zfsglacier-bench``, N = ``$ZG_BENCH_MB``, default 544 MiB of file data, so that the
stream is larger than 512 MiB) with ``corpus.json`` beside it.  ZFS (zfs-fuse, via
tests/zfsfuse.py) is used only while building: the pool is destroyed afterwards and the daemon is
stopped if this module started it.

A second recipe, ``pylib`` (issue 14: a real 1.1 GB stream with Python libraries, docs, an SQL
dump, logs and media ran zg-encrypt at 0.94x of zstd|openssl, and the 2013 recipe at ~10 MB/s),
is written to ``$ZG_BENCH_DIR/pylib-mb<N>/`` (default N = 1050, a stream of ~1.1 GB):

    python  35%  the files of this Python's library tree (stdlib, site-packages: .py, .pyc, .so, data)
    docs     8%  real text from /usr/share/doc and the licenses, as in the first recipe
    sql     22%  the generated dump of the first recipe
    logs    15%  generated syslog, nginx access and application logs (seeded, time-ordered)
    media   20%  files that are compressed already, as they are on disk: the .gz of /usr/share/man
                 and /usr/share/doc, images under /usr/share, wheels; random bytes for the rest

    python3 -m benchmarks.corpus [--recipe mixed|pylib] [--mb N] [--dir DIR] [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
import zfsfuse  # noqa: E402  (tests/zfsfuse.py also puts the repository on sys.path)
from zfsfuse import AdminZfs  # noqa: E402

from zfsglacier.zfs import find_command  # noqa: E402

GENERATOR = 1  # bump when the recipe below changes: cached corpora are rebuilt
SEED = 2013
DEFAULT_DIR = "/var/tmp/zfsglacier-bench"
DEFAULT_MB = 544
SHARES = {"sql": 0.35, "text": 0.25, "binary": 0.30, "random": 0.10}
MiB = 1 << 20


PYLIB_MB = 1050
PYLIB_SHARES = {"python": 0.35, "docs": 0.08, "sql": 0.22, "logs": 0.15, "media": 0.20}


def bench_dir() -> Path:
    return Path(os.environ.get("ZG_BENCH_DIR") or DEFAULT_DIR)


def bench_mb() -> int:
    return int(os.environ.get("ZG_BENCH_MB") or DEFAULT_MB)


@dataclass(frozen=True)
class Corpus:
    dir: Path  # the per-size directory: stream.zfs, corpus.json, and room for run outputs
    stream: Path
    info: dict

    @property
    def size(self) -> int:
        return self.info["stream_bytes"]


# ---------------------------------------------------------------- generators


def _syllable_words(rng: random.Random, count: int, lo: int, hi: int) -> list[str]:
    syl = ["ka", "ri", "mo", "len", "sa", "to", "an", "ber", "li", "na", "el", "vi", "dor", "mar", "co",
           "tin", "ja", "ne", "ros", "ha", "us", "per", "gu", "ston", "we", "lo", "fi", "da", "ze", "qui"]
    out = set()
    while len(out) < count:
        out.add("".join(rng.choice(syl) for _ in range(rng.randint(lo, hi))).capitalize())
    return sorted(out)


class SqlDump:
    """A mysqldump-style dump of a shop database, produced in pieces of any size."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.first = _syllable_words(rng, 900, 2, 3)
        self.last = _syllable_words(rng, 2500, 2, 4)
        self.cities = _syllable_words(rng, 400, 2, 4)
        self.streets = [f"{w} {rng.choice(['Street', 'Road', 'Lane', 'Avenue', 'Way'])}"
                        for w in _syllable_words(rng, 600, 2, 3)]
        self.products = [f"{a} {b.lower()}" for a, b in zip(_syllable_words(rng, 3000, 2, 3),
                                                               rng.choices(_syllable_words(rng, 300, 2, 3), k=3000))]
        self.domains = ["example.com", "mail.example.org", "shop.example.net", "post.example", "inbox.example.de"]
        self.countries = ["US", "DE", "FR", "GB", "NL", "ES", "IT", "SE", "PL", "CA", "AU", "JP"]
        self.statuses = ["new", "paid", "shipped", "delivered", "returned", "cancelled"]
        self.levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
        self.msgs = ["user %d logged in from %s", "order %d paid via %s", "cart %d updated (%s)",
                     "password reset requested for %d (%s)", "payment %d declined: %s",
                     "shipment %d handed to carrier %s", "session %d expired (%s)"]
        self.tables = ["customers", "orders", "order_items", "events", "sessions"]
        self.ids = dict.fromkeys(self.tables, 0)
        self.ts = 1356998400  # 2013-01-01
        self.pending = b""
        self.table_i = 0
        self.started = False

    def _header(self) -> str:
        return ("-- MySQL dump 10.13  Distrib 5.5.31, for debian-linux-gnu (x86_64)\n--\n"
                "-- Host: localhost    Database: shop\n"
                "-- ------------------------------------------------------\n"
                "-- Server version\t5.5.31-0+wheezy1\n\n"
                "/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n"
                "/*!40101 SET NAMES utf8 */;\n/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n\n")

    def _create(self, table: str) -> str:
        cols = {
            "customers": "`id` int(11) NOT NULL AUTO_INCREMENT,\n  `first_name` varchar(64) NOT NULL,\n"
                         "  `last_name` varchar(64) NOT NULL,\n  `email` varchar(255) NOT NULL,\n"
                         "  `password_md5` char(32) NOT NULL,\n  `phone` varchar(32) DEFAULT NULL,\n"
                         "  `street` varchar(255) DEFAULT NULL,\n  `city` varchar(128) DEFAULT NULL,\n"
                         "  `country` char(2) NOT NULL,\n  `created_at` datetime NOT NULL,\n"
                         "  `balance` decimal(12,2) NOT NULL DEFAULT '0.00',\n",
            "orders": "`id` int(11) NOT NULL AUTO_INCREMENT,\n  `customer_id` int(11) NOT NULL,\n"
                      "  `status` enum('new','paid','shipped','delivered','returned','cancelled') NOT NULL,\n"
                      "  `total` decimal(12,2) NOT NULL,\n  `currency` char(3) NOT NULL,\n"
                      "  `created_at` datetime NOT NULL,\n  `updated_at` datetime DEFAULT NULL,\n",
            "order_items": "`id` int(11) NOT NULL AUTO_INCREMENT,\n  `order_id` int(11) NOT NULL,\n"
                           "  `sku` varchar(16) NOT NULL,\n  `title` varchar(255) NOT NULL,\n"
                           "  `quantity` int(11) NOT NULL,\n  `price` decimal(10,2) NOT NULL,\n",
            "events": "`id` bigint(20) NOT NULL AUTO_INCREMENT,\n  `ts` datetime NOT NULL,\n"
                      "  `level` varchar(8) NOT NULL,\n  `host` varchar(64) NOT NULL,\n  `message` text NOT NULL,\n"
                      "  `payload` text,\n",
            "sessions": "`id` char(40) NOT NULL,\n  `customer_id` int(11) DEFAULT NULL,\n"
                        "  `ip` varchar(45) NOT NULL,\n  `user_agent` varchar(255) DEFAULT NULL,\n"
                        "  `expires` datetime NOT NULL,\n",
        }[table]
        return (f"--\n-- Table structure for table `{table}`\n--\n\nDROP TABLE IF EXISTS `{table}`;\n"
                f"CREATE TABLE `{table}` (\n  {cols}  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8;\n\n"
                f"--\n-- Dumping data for table `{table}`\n--\n\nLOCK TABLES `{table}` WRITE;\n")

    def _dt(self) -> str:
        self.ts += int(self.rng.random() * 90)
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.ts))

    def _row(self, table: str) -> str:
        r, g = self.rng.random, self.rng.getrandbits
        self.ids[table] += 1
        i = self.ids[table]
        if table == "customers":
            f, la = self.first[int(r() * len(self.first))], self.last[int(r() * len(self.last))]
            return (f"({i},'{f}','{la}','{f.lower()}.{la.lower()}{int(r() * 100)}@"
                    f"{self.domains[int(r() * 5)]}','{g(128):032x}','+{int(r() * 90) + 1}-{int(r() * 1e9):09d}',"
                    f"'{int(r() * 300) + 1} {self.streets[int(r() * len(self.streets))]}',"
                    f"'{self.cities[int(r() * len(self.cities))]}','{self.countries[int(r() * 12)]}',"
                    f"'{self._dt()}',{r() * 2000:.2f})")
        if table == "orders":
            upd = f"'{self._dt()}'" if r() < 0.7 else "NULL"
            return (f"({i},{int(r() * max(self.ids['customers'], 1)) + 1},'{self.statuses[int(r() * 6)]}',"
                    f"{r() * 500:.2f},'{'EUR' if r() < 0.6 else 'USD'}','{self._dt()}',{upd})")
        if table == "order_items":
            p = int(r() * len(self.products))
            return (f"({i},{int(r() * max(self.ids['orders'], 1)) + 1},'SKU-{p:06d}','{self.products[p]}',"
                    f"{int(r() * 5) + 1},{(p % 997) / 7 + 0.99:.2f})")
        if table == "events":
            m = self.msgs[int(r() * len(self.msgs))] % (int(r() * 10**6), self.cities[int(r() * len(self.cities))])
            payload = (f"'{{\\\"req\\\":\\\"{g(64):016x}\\\",\\\"ms\\\":{int(r() * 900)}}}'" if r() < 0.5 else "NULL")
            return (f"({i},'{self._dt()}','{self.levels[int(r() * 6)]}','web{int(r() * 12):02d}.shop.internal',"
                    f"'{m}',{payload})")
        ip = (f"10.{int(r() * 256)}.{int(r() * 256)}.{int(r() * 256)}" if r() < 0.8
              else f"2001:db8::{g(16):x}:{g(16):x}")
        ua = ["Mozilla/5.0 (X11; Linux x86_64; rv:24.0) Gecko/20100101 Firefox/24.0",
              "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/31.0",
              "Mozilla/5.0 (iPhone; CPU iPhone OS 7_0 like Mac OS X) AppleWebKit/537.51.1"][int(r() * 3)]
        return f"('{g(160):040x}',{int(r() * max(self.ids['customers'], 1)) + 1},'{ip}','{ua}','{self._dt()}')"

    def _section(self) -> bytes:
        """One table: CREATE, then 20-200 extended INSERT lines of ~64 KB, like mysqldump."""
        parts = [] if self.started else [self._header()]
        self.started = True
        table = self.tables[self.table_i % len(self.tables)]
        self.table_i += 1
        parts.append(self._create(table))
        for _ in range(self.rng.randint(20, 200)):
            rows, n = [], 0
            while n < 65000:
                row = self._row(table)
                rows.append(row)
                n += len(row) + 1
            parts.append(f"INSERT INTO `{table}` VALUES {','.join(rows)};\n")
        parts.append("UNLOCK TABLES;\n\n")
        return "".join(parts).encode()

    def take(self, n: int) -> bytes:
        while len(self.pending) < n:
            self.pending += self._section()
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


class Prose:
    """Order-2 word Markov chain over real text: endless text that reads like the source."""

    def __init__(self, rng: random.Random, training: bytes):
        self.rng = rng
        words = training.decode("utf-8", "replace").split()
        self.next: dict[tuple[str, str], list[str]] = {}
        for a, b, c in zip(words, words[1:], words[2:]):
            self.next.setdefault((a, b), []).append(c)
        self.keys = list(self.next)
        self.state = self.keys[0] if self.keys else ("lorem", "ipsum")
        self.pending = b""

    def _paragraphs(self, nbytes: int) -> bytes:
        rnd, nxt = self.rng.random, self.next
        a, b = self.state
        lines, line, col, total = [], [], 0, 0
        while total < nbytes:
            follow = nxt.get((a, b))
            if not follow:
                a, b = self.keys[int(rnd() * len(self.keys))]
                continue
            c = follow[int(rnd() * len(follow))]
            line.append(c)
            col += len(c) + 1
            a, b = b, c
            if col > 72:
                text = " ".join(line)
                lines.append(text)
                total += len(text) + 1
                line, col = [], 0
                if rnd() < 0.12:
                    lines.append("")
        self.state = (a, b)
        return ("\n".join(lines) + "\n").encode()

    def take(self, n: int) -> bytes:
        while len(self.pending) < n:
            self.pending += self._paragraphs(max(n - len(self.pending), 1 << 16))
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def _text_files(limit: int) -> list[tuple[str, bytes]]:
    """Real text files (sorted walk): /usr/share/common-licenses, then /usr/share/doc, unpacked."""
    out, total = [], 0
    for root in ("/usr/share/common-licenses", "/usr/share/doc"):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                    if name.endswith(".gz"):
                        data = gzip.decompress(data)
                except (OSError, EOFError, gzip.BadGzipFile):
                    continue
                if not data or b"\0" in data[:8192]:
                    continue  # not text (images, pdf, ...)
                out.append((path, data))
                total += len(data)
                if total >= limit:
                    return out
    return out


class Logs:
    """Generated logs of three kinds (one kind per file, as under /var/log): syslog, an nginx
    access log and an application log, with time moving forward line by line."""

    KINDS = ("syslog", "access", "app")

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.ts = 1767225600  # 2026-01-01
        self.hosts = [f"web{i:02d}" for i in range(12)] + ["db01", "db02", "lb01"]
        self.paths = ["/", "/api/v1/orders", "/api/v1/orders/%d", "/api/v1/cart/%d", "/static/app.%x.js",
                      "/static/img/p%d.jpg", "/login", "/search?q=%s", "/api/v1/customers/%d/invoices"]
        self.words = _syllable_words(rng, 500, 2, 3)
        self.agents = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0",
                       "curl/8.5.0", "Prometheus/2.51.0", "python-requests/2.31.0"]
        self.daemons = [("sshd", "Accepted publickey for deploy from %s port %d ssh2"),
                        ("CRON", "(root) CMD (/usr/local/bin/zg-backup --job nightly)"),
                        ("kernel", "[%d.%06d] eth0: link up, 1000Mbps, full-duplex"),
                        ("systemd", "Started Session %d of User deploy."),
                        ("postfix/smtpd", "connect from unknown[%s]"),
                        ("zed", "eid=%d class=history_event pool='tank'")]
        self.pending = {k: b"" for k in self.KINDS}

    def _ip(self) -> str:
        r = self.rng.random
        return f"10.{int(r() * 256)}.{int(r() * 256)}.{int(r() * 256)}"

    def _line(self, kind: str) -> str:
        r = self.rng.random
        self.ts += int(r() * 3)
        t = time.gmtime(self.ts)
        if kind == "syslog":
            name, fmt = self.daemons[int(r() * len(self.daemons))]
            n = fmt.count("%")
            args = {0: (), 1: (int(r() * 99999),), 2: (self._ip(), int(r() * 60000) + 1024)}[n]
            if name == "kernel":
                args = (self.ts % 100000, int(r() * 1e6))
            elif name == "postfix/smtpd":
                args = (self._ip(),)
            return (f"{time.strftime('%b %e %H:%M:%S', t)} {self.hosts[int(r() * len(self.hosts))]} "
                    f"{name}[{int(r() * 32768)}]: {fmt % args}")
        if kind == "access":
            path = self.paths[int(r() * len(self.paths))]
            if "%s" in path:
                path = path % self.words[int(r() * len(self.words))].lower()
            elif "%" in path:
                path = path % int(r() * 100000)
            status = 200 if r() < 0.9 else (404 if r() < 0.6 else 500)
            return (f'{self._ip()} - - [{time.strftime("%d/%b/%Y:%H:%M:%S +0000", t)}] "GET {path} HTTP/1.1" '
                    f'{status} {int(r() * 60000)} "-" "{self.agents[int(r() * len(self.agents))]}" '
                    f'{r() * 0.8:.3f}')
        level = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")[int(r() * 6)]
        return (f"{time.strftime('%Y-%m-%dT%H:%M:%S', t)}.{int(r() * 1000):03d}Z {level:5} "
                f"[worker-{int(r() * 8)}] {self.words[int(r() * len(self.words))].lower()}.service - "
                f"order {int(r() * 10**6)} {('paid', 'shipped', 'updated', 'cancelled')[int(r() * 4)]} "
                f"({int(r() * 900)} ms) req={self.rng.getrandbits(32):08x}")

    def taker(self, kind: str):
        def take(n: int) -> bytes:
            buf = [self.pending[kind]]
            have = len(buf[0])
            while have < n:
                line = (self._line(kind) + "\n").encode()
                buf.append(line)
                have += len(line)
            data = b"".join(buf)
            self.pending[kind] = data[n:]
            return data[:n]
        return take


def _walk_files(roots, keep=lambda path: True) -> list[str]:
    """Regular files (no symlinks) under ``roots``, in a sorted walk, that ``keep`` accepts."""
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if not os.path.islink(path) and os.path.isfile(path) and keep(path):
                    found.append(path)
    return found


MEDIA_SUFFIXES = (".gz", ".png", ".jpg", ".jpeg", ".gif", ".svgz", ".whl", ".xz", ".bz2", ".zip")


def _elf_files(rng: random.Random) -> list[str]:
    """ELF files of 16 KiB..32 MiB under /usr/lib and /usr/bin, in a seeded order."""
    found = []
    for root in ("/usr/bin", "/usr/lib"):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                    if not (16 << 10) <= st.st_size <= (32 << 20) or (st.st_mode & 0o170000) != 0o100000:
                        continue
                    with open(path, "rb") as f:
                        if f.read(4) != b"\x7fELF":
                            continue
                except OSError:
                    continue
                found.append(path)
    rng.shuffle(found)
    return found


# ---------------------------------------------------------------- plan and build


def _plan(total: int, rng: random.Random):
    """[(category, relative path, size or source path)], shuffled; plus text sources and their bytes."""
    quota = {k: int(total * v) for k, v in SHARES.items()}
    items = []
    # SQL: dump files of 4..24 MiB (one per "database")
    left, n = quota["sql"], 0
    while left > 0:
        size = min(left, rng.randint(4 * MiB, 24 * MiB))
        items.append(("sql", f"db/shop-{n:03d}.sql", size))
        left -= size
        n += 1
    # text: real files up to half the share, generated prose for the rest
    real = _text_files(quota["text"] // 2)
    real_bytes = 0
    for i, (path, data) in enumerate(real):
        data = data[: quota["text"] // 2 - real_bytes] if real_bytes + len(data) > quota["text"] // 2 else data
        if not data:
            break
        items.append(("text", f"doc/{i:05d}-{os.path.basename(path).removesuffix('.gz')}", data))
        real_bytes += len(data)
    left, n = quota["text"] - real_bytes, 0
    while left > 0:
        size = min(left, rng.randint(16 << 10, 2 * MiB))
        items.append(("prose", f"notes/{n:05d}.txt", size))
        left -= size
        n += 1
    # binaries
    left, n_bin = quota["binary"], 0
    for path in _elf_files(rng):
        if left <= 0:
            break
        size = min(os.path.getsize(path), left)
        items.append(("binary", f"bin/{n_bin:05d}-{os.path.basename(path)}", path))
        left -= size
        n_bin += 1
    # random
    left, n = quota["random"], 0
    while left > 0:
        size = min(left, rng.randint(256 << 10, 8 * MiB))
        items.append(("random", f"media/IMG_{n:05d}.jpg", size))
        left -= size
        n += 1
    rng.shuffle(items)
    return items, real


def _copies(items, kind: str, paths, quota: int, prefix: str) -> int:
    """Add real files of ``kind`` to ``items`` until ``quota`` bytes; returns the bytes planned."""
    left = quota
    for n, path in enumerate(paths):
        if left <= 0:
            break
        size = min(os.path.getsize(path), left)
        if size:
            items.append((kind, f"{prefix}/{n:05d}-{os.path.basename(path)}", path))
            left -= size
    return quota - left


def _generated(items, kind: str, quota: int, prefix: str, lo: int, hi: int, rng: random.Random, name) -> None:
    left, n = quota, 0
    while left > 0:
        size = min(left, rng.randint(lo, hi))
        items.append((kind, f"{prefix}/{name(n)}", size))
        left -= size
        n += 1


def _plan_pylib(total: int, rng: random.Random):
    """The second recipe's [(kind, relative path, size | bytes | source path)], shuffled."""
    quota = {k: int(total * v) for k, v in PYLIB_SHARES.items()}
    items = []
    lib = Path(sys.base_prefix) / "lib"
    _copies(items, "python", _walk_files([lib]), quota["python"], "lib")
    docs = _text_files(quota["docs"])
    used = 0
    for i, (path, data) in enumerate(docs):
        data = data[: quota["docs"] - used]
        if not data:
            break
        items.append(("docs", f"doc/{i:05d}-{os.path.basename(path).removesuffix('.gz')}", data))
        used += len(data)
    _generated(items, "sql", quota["sql"], "db", 4 * MiB, 24 * MiB, rng, lambda n: f"shop-{n:03d}.sql")
    for kind in Logs.KINDS:
        _generated(items, f"logs-{kind}", quota["logs"] // 3, "log", 256 << 10, 16 * MiB, rng,
                   lambda n, k=kind: f"{k}.log.{n}")
    media = _walk_files(["/usr/share", os.path.expanduser("~/.cache/pip")],
                        lambda p: p.endswith(MEDIA_SUFFIXES) and os.path.getsize(p) >= 4096)
    real = _copies(items, "media", media, quota["media"], "media")
    _generated(items, "random", quota["media"] - real, "media", 256 << 10, 8 * MiB, rng,
               lambda n: f"VID_{n:05d}.mp4")
    rng.shuffle(items)
    return items


def _write_items(root: Path, items, makers: dict, caps: dict) -> dict:
    """Write the planned files; generated kinds come from ``makers[kind](n)`` a MiB at a time, real
    files are copied whole, up to what ``caps[kind]`` leaves of their kind's quota."""
    stats: dict = {}
    for kind, rel, what in items:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        st = stats.setdefault(kind.split("-")[0], {"bytes": 0, "files": 0})
        with open(root / rel, "wb") as f:
            if isinstance(what, int):
                for off in range(0, what, MiB):
                    f.write(makers[kind](min(MiB, what - off)))
                n = what
            elif isinstance(what, bytes):
                f.write(what)
                n = len(what)
            else:
                with open(what, "rb") as src:
                    n = len(data := src.read(caps[kind] - st["bytes"]))
                f.write(data)
        st["bytes"] += n
        st["files"] += 1
    return stats


def _write_pylib(root: Path, total: int, rng: random.Random) -> dict:
    items = _plan_pylib(total, rng)
    logs = Logs(random.Random(rng.getrandbits(64)))
    noise = random.Random(rng.getrandbits(64))
    makers = {"sql": SqlDump(random.Random(rng.getrandbits(64))).take, "random": noise.randbytes,
              **{f"logs-{k}": logs.taker(k) for k in Logs.KINDS}}
    return _write_items(root, items, makers, {k: int(total * v) for k, v in PYLIB_SHARES.items()})


def _write_tree(root: Path, total: int, rng: random.Random) -> dict:
    items, real = _plan(total, rng)
    sql = SqlDump(random.Random(rng.getrandbits(64)))
    prose = Prose(random.Random(rng.getrandbits(64)), b"\n".join(d for _, d in real)[: 16 * MiB])
    noise = random.Random(rng.getrandbits(64))
    stats = {k: {"bytes": 0, "files": 0} for k in ("sql", "text", "prose", "binary", "random")}
    for d in ("db", "doc", "notes", "bin", "media"):
        (root / d).mkdir()
    quota_bin = int(total * SHARES["binary"])
    for kind, rel, what in items:
        with open(root / rel, "wb") as f:
            if kind == "sql":
                for off in range(0, what, MiB):
                    f.write(sql.take(min(MiB, what - off)))
                n = what
            elif kind == "text":
                f.write(what)
                n = len(what)
            elif kind == "prose":
                f.write(prose.take(what))
                n = what
            elif kind == "binary":
                room = quota_bin - stats["binary"]["bytes"]
                with open(what, "rb") as src:
                    n = len(data := src.read(room))
                f.write(data)
            else:
                for off in range(0, what, MiB):
                    f.write(noise.randbytes(min(MiB, what - off)))
                n = what
        stats[kind]["bytes"] += n
        stats[kind]["files"] += 1
    return stats


def _tool_version(argv) -> str:
    with contextlib.suppress(OSError):
        done = subprocess.run(argv, capture_output=True, text=True)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    return "?"


def pool_size(mb: int, copies: int = 1) -> str:
    """A sparse pool file big enough for ``copies`` datasets of ``mb`` MiB of corpus files each."""
    return f"{max(1024, mb * (copies + 1) + 256)}M"


RECIPES = {"mixed": _write_tree, "pylib": _write_pylib}


def fill_dataset(zfs: AdminZfs, ds: str, mb: int, recipe: str = "mixed") -> dict:
    """Create ``ds`` (compression off) and write the corpus files into it; returns what went in, per kind."""
    zfs.create(ds, {"compression": "off", "atime": "off"})
    return RECIPES[recipe](Path(zfs.mountpoint(ds)), mb * MiB, random.Random(SEED))


def _build(dest: Path, mb: int, recipe: str) -> dict:
    find_command("zfs")  # a clear message early if ZFS is missing
    t0 = time.monotonic()
    started = zfsfuse.start()
    try:
        pool = zfsfuse.Pool.create(size=pool_size(mb))
        try:
            zfs = AdminZfs()
            ds = f"{pool.name}/bench"
            stats = fill_dataset(zfs, ds, mb, recipe)
            written = time.monotonic()
            snap = zfs.snapshot(f"{ds}@bench")
            tmp = dest / "stream.zfs.tmp"
            proc = zfs.send(snap.name)
            digest = hashlib.sha256()
            with open(tmp, "wb") as out:
                while chunk := proc.stdout.read(MiB):
                    digest.update(chunk)
                    out.write(chunk)
            proc.check()
            sent = time.monotonic()
        finally:
            pool.destroy()
    finally:
        if started:
            zfsfuse.stop()
    stream_bytes = tmp.stat().st_size
    tmp.rename(dest / "stream.zfs")
    files_bytes = sum(s["bytes"] for s in stats.values())
    return {
        "generator": GENERATOR, "recipe": recipe, "seed": SEED, "mb": mb, "stream_bytes": stream_bytes,
        "stream_sha256": digest.hexdigest(), "file_bytes": files_bytes,
        "composition": {k: {**v, "share": round(v["bytes"] / files_bytes, 4)} for k, v in stats.items()},
        "snapshot_guid": snap.guid, "zfs": "zfs-fuse " + _tool_version(["dpkg-query", "-W", "-f=${Version}", "zfs-fuse"]),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": {"write_files": round(written - t0, 1), "send": round(sent - written, 1)},
    }


def ensure(mb: int | None = None, base: Path | None = None, force: bool = False, recipe: str = "mixed") -> Corpus:
    """The cached corpus of this recipe and size, built first if missing or made by another generator."""
    mb = mb or (bench_mb() if recipe == "mixed" else PYLIB_MB)
    d = (base or bench_dir()) / (f"mb{mb}" if recipe == "mixed" else f"{recipe}-mb{mb}")
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once: the second waits, then reuses
        meta, stream = d / "corpus.json", d / "stream.zfs"
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(meta.read_text())
            if (not force and info.get("generator") == GENERATOR and info.get("seed") == SEED
                    and info.get("recipe", "mixed") == recipe
                    and info.get("mb") == mb and stream.stat().st_size == info.get("stream_bytes")):
                return Corpus(d, stream, info)
        for p in (meta, stream):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        info = _build(d, mb, recipe)
        meta.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        return Corpus(d, stream, info)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=None, help=f"MiB of file data (default $ZG_BENCH_MB or {DEFAULT_MB})")
    ap.add_argument("--dir", type=Path, default=None, help=f"cache directory (default $ZG_BENCH_DIR or {DEFAULT_DIR})")
    ap.add_argument("--force", action="store_true", help="rebuild even if a cached corpus matches")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="mixed",
                    help=f"which corpus (default mixed; pylib: {PYLIB_MB} MiB unless --mb)")
    args = ap.parse_args(argv)
    try:
        c = ensure(args.mb, args.dir, args.force, args.recipe)
    except zfsfuse.HarnessError as err:
        print(f"corpus: {err}", file=sys.stderr)
        return 1
    print(c.stream)
    print(json.dumps(c.info, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
