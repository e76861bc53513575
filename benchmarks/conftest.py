"""Fixtures for the benchmark suite (`make bench`): the cached corpus, keys, and the final report.

The report (``.make/bench.md``) is written at the end of the session and printed after
pytest-benchmark's own tables.  Run without ``--benchmark-enable`` (as plain `pytest benchmarks`
does, since pyproject's addopts disables benchmarks), every benchmark is skipped: each one runs
real pipelines over hundreds of MB and is meant for `make bench`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import corpus as corpus_mod
from . import procs, report

REPO = Path(__file__).resolve().parent.parent
REPORT_PATH = REPO / ".make" / "bench.md"
TOOLS = ("pbzip2", "bzip2", "openssl", "zstd", "cat")


def _enabled(config) -> bool:
    return bool(config.getoption("benchmark_enable", False) or not config.getoption("benchmark_disable", False))


def pytest_collection_modifyitems(config, items):
    if _enabled(config):
        return
    skip = pytest.mark.skip(reason="benchmarks run with --benchmark-enable (`make bench`)")
    for item in items:
        if "benchmarks" in Path(str(item.fspath)).parts:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def corpus() -> corpus_mod.Corpus:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing commands: {', '.join(missing)} (`make install` installs them)", pytrace=False)
    try:
        c = corpus_mod.ensure()
    except Exception as err:  # noqa: BLE001  (zfs-fuse harness or zfs errors: say why, no traceback)
        pytest.fail(f"cannot build the benchmark corpus: {err}", pytrace=False)
    report.CONTEXT["corpus"] = c.info
    report.CONTEXT["floor_mib"] = procs.floor_mib()
    subprocess.run(["cat", str(c.stream)], stdout=subprocess.DEVNULL, check=True)  # into the page cache
    (c.dir / "out").mkdir(exist_ok=True)
    return c


@pytest.fixture(scope="session")
def corpus2(corpus) -> corpus_mod.Corpus:
    """The second corpus (recipe pylib, ~1.1 GB), built once and cached like the first."""
    try:
        c = corpus_mod.ensure(recipe="pylib")
    except Exception as err:  # noqa: BLE001
        pytest.fail(f"cannot build the second benchmark corpus: {err}", pytrace=False)
    report.CONTEXT["corpus2"] = c.info
    subprocess.run(["cat", str(c.stream)], stdout=subprocess.DEVNULL, check=True)
    (c.dir / "out").mkdir(exist_ok=True)
    return c


@dataclass(frozen=True)
class Keys:
    zg_secret: Path  # zg-keygen secret key (mode 0600): zg-decrypt
    zg_public: Path  # its recipient: zg-encrypt, as on a backup host
    openssl_pass: Path  # a random password line for `openssl -pass file:`

    def fingerprint(self) -> str:
        return self.zg_public.read_text().strip()[-12:]


@pytest.fixture(scope="session")
def keys() -> Keys:
    d = corpus_mod.bench_dir() / "keys"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    k = Keys(d / "zg.key", d / "zg.pub", d / "openssl.pass")
    if not k.zg_secret.exists() or not k.zg_public.exists():
        for p in (k.zg_secret, k.zg_public):
            if p.exists():
                p.unlink()
        done = subprocess.run([sys.executable, str(REPO / "bin" / "zg-keygen"), "-o", str(k.zg_secret)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"zg-keygen failed: {done.stderr.strip()}", pytrace=False)
        k.zg_public.write_text(done.stdout)
    os.chmod(k.zg_secret, 0o600)
    if not k.openssl_pass.exists():
        import base64
        fd = os.open(k.openssl_pass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(os.urandom(48)).decode() + "\n")
    return k


def pytest_sessionfinish(session, exitstatus):
    if not report.ROWS:
        return
    session.config._zg_bench_report = report.write(REPORT_PATH)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    text = getattr(config, "_zg_bench_report", None)
    if text is None and report.ROWS:  # terminal summary ran first: write now
        text = config._zg_bench_report = report.write(REPORT_PATH)
    if text:
        terminalreporter.write_sep("=", f"zfsglacier benchmark report ({REPORT_PATH.relative_to(REPO)})")
        terminalreporter.write_line(text)
