"""moto's S3 in server mode, in a process of its own, for the transfer benchmarks.

    with MotoServer(workdir) as moto:      # moto.url = http://127.0.0.1:PORT, moto.pid for CPU accounting
        moto.env                           # what an S3 client process needs to reach it (and nothing from ~/.aws)
        moto.clear(bucket)                 # delete every object (all versions) and unfinished upload

The server is moto's own ThreadedMotoServer (werkzeug, a thread per request), started by
``python3 -m benchmarks.motoserver`` in a separate process so that it never shares a GIL with
pytest or the measured clients; every client of a row talks to the same server over 127.0.0.1.
Objects larger than MOTO_S3_DEFAULT_KEY_BUFFER_SIZE (moto's default, 5 MiB) are spooled to
temporary files, here under ``workdir`` (TMPDIR), which the parent deletes.

One quirk of moto is corrected in the server process, the same for every client: moto answers a
ranged GET by reading the *whole* object and slicing it, so an object fetched in N ranges costs N
full copies inside the server (4 GB in 16 MiB ranges: 256 x 4 GB copied, with a 4 GB buffer per
request in flight).  Real S3 reads only the range.  ``_serve_ranges_lazily`` lets a ranged GET
read just its range from the stored bytes; everything else (auth, storage-class and restore
checks, headers, errors) is moto's unchanged code.  ``ZG_BENCH_MOTO_RANGES=copy`` turns the fix off.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
from helpers import AWS_TEST_ENV  # noqa: E402  (the test suite's credentials for moto)

START_TIMEOUT = 30.0
_SIMPLE_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def client_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default os.environ) without any AWS_* setting, plus the test credentials and ``extra``.

    Dropping AWS_* matters: a CA bundle, profile or endpoint from the caller's environment would
    reach (or break: rclone refuses AWS_CA_BUNDLE over plain HTTP) some clients and not others."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AWS_")}
    env.update(AWS_TEST_ENV)
    env.update(extra)
    return env


class MotoServer:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def env(self) -> dict[str, str]:
        return client_env(AWS_ENDPOINT_URL_S3=self.url)

    def __enter__(self) -> "MotoServer":
        tmp = self.workdir / "moto-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = client_env(TMPDIR=str(tmp))
        with open(self.workdir / "moto.log", "wb") as log:  # werkzeug logs every request on stderr
            self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.motoserver"], cwd=REPO, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        if not line or not line[0].startswith("http://"):
            self.__exit__(None, None, None)
            tail = (self.workdir / "moto.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"moto server did not start within {START_TIMEOUT:.0f} s: {' | '.join(tail)}")
        self.url = line[0].strip()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()
        self.proc = None

    def client(self):
        import boto3
        env = self.env
        return boto3.client("s3", endpoint_url=self.url, region_name=env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def make_bucket(self, bucket: str, *, versioned: bool = False) -> None:
        c = self.client()
        c.create_bucket(Bucket=bucket)
        if versioned:
            c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def clear(self, bucket: str) -> None:
        """Delete every object version, delete marker and unfinished multipart upload in ``bucket``."""
        c = self.client()
        for page in c.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                c.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for up in page.get("Uploads", []):
                c.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])


# ---------------------------------------------------------------- the server process


class _Window:
    """Stands for a stored object's bytes in moto's ranged-GET path: len() and [a:b] read only that."""

    def __init__(self, key):
        self.key = key

    def __len__(self) -> int:
        return self.key.size

    def __bool__(self) -> bool:
        return self.key.size > 0

    def __getitem__(self, item):
        if not isinstance(item, slice) or item.step not in (None, 1):
            return bytes(self)[item]
        start, stop, _ = item.indices(self.key.size)
        with self.key.lock:
            buf = self.key._value_buffer
            buf.seek(start)
            return buf.read(max(0, stop - start))

    def __bytes__(self) -> bytes:
        return self[:]


def _serve_ranges_lazily() -> None:
    """Patch moto (in this process only) so that a ranged GET reads just its range (module doc)."""
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    local = threading.local()
    value = FakeKey.value
    key_response = S3Response.key_response

    def lazy_value(self):
        return _Window(self) if getattr(local, "lazy", False) else value.fget(self)

    def ranged_key_response(self, request, full_url, headers):
        if request.method != "GET" or not _SIMPLE_RANGE.match(request.headers.get("range") or ""):
            return key_response(self, request, full_url, headers)
        local.lazy = True
        try:
            status, out_headers, body = key_response(self, request, full_url, headers)
        finally:
            local.lazy = False
        if isinstance(body, _Window):  # a path that did not slice (e.g. a range past the end): as moto would
            body = bytes(body)
        return status, out_headers, body

    FakeKey.value = property(lazy_value, value.fset)
    S3Response.key_response = ranged_key_response


def serve() -> int:
    from moto.server import ThreadedMotoServer

    if os.environ.get("ZG_BENCH_MOTO_RANGES") != "copy":
        _serve_ranges_lazily()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()  # parent gone
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
