"""Small shared helpers for the tests (no fixtures here: see conftest.py)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "bin"


def zg(cmd, *args, input=None, env=None, stdin=None, check=False, pass_fds=()):
    """Run bin/zg-CMD as a real process; returns CompletedProcess with bytes stdout/stderr."""
    e = dict(os.environ)
    e.pop("ZG_DEBUG", None)
    e.update(env or {})
    kw = dict(stdin=stdin) if stdin is not None else dict(input=input if input is not None else b"")
    return subprocess.run([sys.executable, str(BIN / f"zg-{cmd}"), *map(str, args)], capture_output=True,
                          env=e, check=check, pass_fds=pass_fds, **kw)


def assert_one_line_error(proc, code, *words):
    """The quality bar for bad input: exit code as documented, one line on stderr, no traceback."""
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in err.lower(), (w, err)
    return err


def mixed_data(size, seed=1):
    """Compressible text, repetitive records and ~10% random bytes, deterministic."""
    import random
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rnd.random()
        if kind < 0.1:
            out += rnd.randbytes(4096)
        elif kind < 0.5:
            out += b"".join(b"INSERT INTO t VALUES (%d, 'name-%d', %f);\n" % (i, rnd.randrange(1000), rnd.random())
                            for i in range(50))
        else:
            out += (b"lorem ipsum dolor sit amet %d " % rnd.randrange(100)) * 40
    return bytes(out[:size])


AWS_TEST_ENV = {  # moto takes any keys; these are also the Ceph RGW test user's (tests/servers/ceph_rgw.py)
    "AWS_ACCESS_KEY_ID": "zgrgwaccess",
    "AWS_SECRET_ACCESS_KEY": "zgrgwsecretzgrgwsecret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
              "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_GLACIER")


def aws_env(**endpoints):
    """Context: test credentials and the given endpoints in os.environ, nothing from ~/.aws."""
    import contextlib

    import pytest

    @contextlib.contextmanager
    def ctx():
        with pytest.MonkeyPatch.context() as mp:
            for name in _AWS_UNSET:
                mp.delenv(name, raising=False)
            for k, v in {**AWS_TEST_ENV, **endpoints}.items():
                mp.setenv(k, v)
            yield mp
    return ctx()


_PEAK = ("import resource, subprocess, sys\n"
         "p = subprocess.run(sys.argv[2:], stdin=open(sys.argv[1], 'rb'), stdout=subprocess.DEVNULL,"
         " stderr=subprocess.PIPE)\n"
         "sys.stderr.buffer.write(p.stderr)\n"
         "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def peak_rss(cmd, *args, input_path, env=None):
    """(exit code, peak RSS in MiB, stderr) of bin/zg-CMD reading ``input_path``, measured by a
    parent of its own (RUSAGE_CHILDREN of a fresh process sees only this child)."""
    e = dict(os.environ)
    e.pop("ZG_DEBUG", None)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", _PEAK, str(input_path), sys.executable, str(BIN / f"zg-{cmd}"),
                        *map(str, args)], capture_output=True, env=e, check=True)
    code, kib = p.stdout.split()
    return int(code), int(kib) / 1024, p.stderr.decode()


def file_destination(path):
    """A new file:// destination at ``path`` (as `zg-init` makes it); returns its URL."""
    from zfsglacier.stores import open_store
    url = f"file://{path}"
    open_store(url).init()
    return url


def mounted(mnt, commands, why):
    """A context manager: run the mount ``commands`` (argv lists) for ``mnt``, yield it, unmount it
    after.  A mount that fails fails the test, saying ``why`` it needs one (nothing skips)."""
    import contextlib

    import pytest

    @contextlib.contextmanager
    def ctx():
        for cmd in commands:
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                pytest.fail(f"`{' '.join(cmd)}` failed ({p.stderr.strip()}): {why}", pytrace=False)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    return ctx()


UPLOADER = r"""
import json, sys
from zfsglacier.plumbing.journal import Journal
from zfsglacier.stores import open_store
store = open_store(sys.argv[1], **json.loads(sys.argv[2]))
jobs, meta = int(sys.argv[3]), {"dataset": "tank/fs"}
up = store.open_continued(meta, Journal.create(sys.argv[4], {"test": True}), jobs=jobs) if len(sys.argv) > 4 \
    else store.open_upload(meta, jobs=jobs)
while True:
    chunk = sys.stdin.buffer.read1(1 << 16)
    if not chunk:
        break
    up.write(chunk)
up.commit()
"""


def upload_then_kill(dest, options, head, stored_parts, want, jobs=1, journal=None):
    """Run an upload in another process, feed it ``head``, kill -9 it once ``stored_parts()``
    reaches ``want``: what a crash in the middle of a backup leaves behind.  With ``journal`` (a
    path) the upload is a journaled one (Store.open_continued), its journal made there."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER, dest, json.dumps(options),
                             str(jobs), *([str(journal)] if journal else [])], stdin=subprocess.PIPE, env=env, cwd=REPO)
    try:
        proc.stdin.write(head)
        proc.stdin.flush()
        deadline = time.monotonic() + 60  # a safety net, not a timing assertion
        while stored_parts() < want:
            assert proc.poll() is None, "the uploader exited before storing its parts"
            assert time.monotonic() < deadline, "the uploader stored nothing in 60 s"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
    assert proc.returncode == -9
