"""Run a pipeline of real processes, as a shell would, and measure it.

    res = run_pipeline([["zstd", "-T0", "-3"], ["openssl", "enc", ...]], source=stream, sink=out)

Data path: a thread of this process splices the source file(s) into a pipe (the stand-in for
`zfs send`; with ``repeat=N`` the file is sent N times, so a 4 GB stream never touches the disk),
the stages are connected by ordinary pipes (default size, as a shell makes them; the zg filters
widen their own), and the last stage writes into a pipe that another thread splices to the sink
file or to /dev/null while counting bytes (the stand-in for `zg-upload`).  splice(2) moves the
data without copying it through Python, so the harness costs almost no CPU.

Measured per stage with wait4(2), in a small helper process that forks the stages (see _SPAWNER:
forking from the big pytest process would inflate every peak RSS): peak RSS (ru_maxrss) and
user + system CPU of the process and all its threads.  For the whole pipeline: wall time from the first spawn to the last exit and the
last byte delivered; cores busy = total stage CPU / wall; and, from /proc/stat, how many cores
*other* processes on the machine used meanwhile (noise from other work).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20


class PipelineError(RuntimeError):
    pass


@dataclass
class Stage:
    argv: list[str]
    returncode: int = 0
    maxrss_kib: int = 0
    utime: float = 0.0
    stime: float = 0.0
    stderr: str = ""

    @property
    def name(self) -> str:
        """A short label: the program name (the script's name for `python3 bin/zg-x`)."""
        prog = os.path.basename(self.argv[0])
        if prog.startswith("python") and len(self.argv) > 1:
            prog = os.path.basename(self.argv[1])
        return prog

    @property
    def cpu(self) -> float:
        return self.utime + self.stime

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kib / 1024

    def as_dict(self) -> dict:
        return {"name": self.name, "argv": self.argv, "maxrss_mib": round(self.rss_mib, 1),
                "user_s": round(self.utime, 3), "sys_s": round(self.stime, 3)}


@dataclass
class Result:
    bytes_in: int
    bytes_out: int
    wall: float
    stages: list[Stage] = field(default_factory=list)
    others_cores: float | None = None  # cores used by other processes on the machine meanwhile
    helper_cpu: float | None = None  # CPU seconds of the helper processes (a server, a daemon) meanwhile

    @property
    def cpu(self) -> float:
        return sum(s.cpu for s in self.stages)

    @property
    def cores_busy(self) -> float:
        return self.cpu / self.wall if self.wall else 0.0

    def mbps(self, nbytes: int | None = None) -> float:
        """MB/s (10^6 bytes) of ``nbytes`` (default: the bytes fed in) over the wall time."""
        return (self.bytes_in if nbytes is None else nbytes) / self.wall / 1e6

    @property
    def peak_rss_mib(self) -> float:
        return max(s.rss_mib for s in self.stages)

    @property
    def helper_cores(self) -> float | None:
        return None if self.helper_cpu is None or not self.wall else self.helper_cpu / self.wall

    def as_dict(self) -> dict:
        return {"bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "wall_s": round(self.wall, 3),
                "mb_per_s_in": round(self.mbps(), 2), "cpu_s": round(self.cpu, 3),
                "cores_busy": round(self.cores_busy, 2),
                "others_cores": None if self.others_cores is None else round(self.others_cores, 2),
                "helper_cpu_s": None if self.helper_cpu is None else round(self.helper_cpu, 3),
                "stages": [s.as_dict() for s in self.stages]}


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already inside user
    return total - idle, total


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a running process (all its threads) from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _splice_all(src_fd: int, dst_fd: int, offset: int | None = None) -> int:
    """Move everything from src to dst with splice(2) (read/write where splice is refused)."""
    moved = 0
    try:
        while True:
            if offset is None:
                n = os.splice(src_fd, dst_fd, CHUNK)
            else:
                n = os.splice(src_fd, dst_fd, CHUNK, offset_src=offset + moved)
            if n == 0:
                return moved
            moved += n
    except OSError as err:
        if err.errno not in (22, 38):  # EINVAL / ENOSYS: this pair of files cannot splice
            raise
    if offset is not None:
        os.lseek(src_fd, offset + moved, os.SEEK_SET)
    while data := os.read(src_fd, CHUNK):
        view = memoryview(data)
        while view:
            view = view[os.write(dst_fd, view):]
        moved += len(data)
    return moved


# The stages are forked by this small helper, not by the (large) Python process running the suite:
# on exec, Linux carries the old address space's peak RSS into the new program's ru_maxrss, so a
# program started from a 300 MB process would report at least 300 MB.  Forked from `python3 -S`,
# every stage's peak RSS includes only the helper's floor (about 6-7 MiB: floor_mib()).
# argv: stage specs separated by SEP, each "stdin_fd stdout_fd stderr_fd prog args...".
# stdout: "start T", then per stage "pid exitcode maxrss_kib utime stime T_exit".
_SPAWNER = r"""
import os, sys, time
SEP = sys.argv[1]
specs, cur = [], []
for a in sys.argv[2:]:
    if a == SEP:
        specs.append(cur)
        cur = []
    else:
        cur.append(a)
specs.append(cur)
passed = sorted({int(x) for s in specs for x in s[:3]})
out = os.fdopen(1, "w")
print("start", time.monotonic(), file=out, flush=True)
pids = []
for s in specs:
    pid = os.fork()
    if pid == 0:
        try:
            for target, fd in enumerate(s[:3]):
                os.dup2(int(fd), target)
            os.closerange(3, 65536)
            os.execvp(s[3], s[3:])
        except BaseException as err:
            os.write(2, ("cannot run %s: %s\n" % (s[3], err)).encode())
        os._exit(127)
    pids.append(pid)
for fd in passed:
    os.close(fd)
for pid in pids:
    _, status, ru = os.wait4(pid, 0)
    print(pid, os.waitstatus_to_exitcode(status), ru.ru_maxrss, ru.ru_utime, ru.ru_stime, time.monotonic(), file=out)
out.flush()
"""
_SEP = "--zg-stage--"


def run_pipeline(stages: list[list[str]], *, source: Path | None, repeat: int = 1, sink: Path | None = None,
                 check: bool = True, env: dict[str, str] | None = None, helpers: tuple[int, ...] = ()) -> Result:
    """Run ``stages`` connected by pipes; feed ``source`` ``repeat`` times; write to ``sink`` (None = discard).

    ``env``: the stages' environment (default: this process's).  ``helpers``: pids of long-running
    processes the stages talk to (a local S3 server, the zfs-fuse daemon): their CPU meanwhile is
    recorded as ``helper_cpu`` and not counted as other processes' load.
    Raises PipelineError when a stage fails (``check``), with the tail of its stderr.
    """
    if not stages:
        raise ValueError("no stages")
    counts = {"in": 0, "out": 0, "drained": 0.0}
    feed_err, sink_err = [], []
    fds = []  # every fd we opened that is still open
    feed_r, feed_w = os.pipe()
    out_r, out_w = os.pipe()
    fds += [feed_r, feed_w, out_r, out_w]
    child_fds = [feed_r, out_w]
    errfiles = [tempfile.TemporaryFile() for _ in stages]
    sink_fd = os.open(sink if sink is not None else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    fds.append(sink_fd)

    def close(fd):
        if fd in fds:
            fds.remove(fd)
            os.close(fd)

    def feed():
        try:
            if source is not None:
                with open(source, "rb") as f:
                    for _ in range(repeat):
                        counts["in"] += _splice_all(f.fileno(), feed_w, offset=0)
        except BrokenPipeError:
            pass  # the first stage stopped reading; its exit code tells why
        except BaseException as err:  # noqa: BLE001  (reported after the run)
            feed_err.append(err)
        finally:
            close(feed_w)

    def drain():
        try:
            counts["out"] = _splice_all(out_r, sink_fd)
        except BaseException as err:  # noqa: BLE001
            sink_err.append(err)
        finally:
            counts["drained"] = time.monotonic()
            close(out_r)

    argv = [sys.executable, "-S", "-I", "-c", _SPAWNER, _SEP]
    prev = feed_r
    for i, (stage, err) in enumerate(zip(stages, errfiles)):
        if i < len(stages) - 1:
            nxt_r, nxt_w = os.pipe()
            fds += [nxt_r, nxt_w]
            child_fds += [nxt_r, nxt_w]
        else:
            nxt_r, nxt_w = None, out_w
        if i:
            argv.append(_SEP)
        argv += [str(prev), str(nxt_w), str(err.fileno()), *map(str, stage)]
        prev = nxt_r
    cpu0, self0 = _cpu_jiffies(), os.times()
    help0 = [process_cpu(pid) for pid in helpers]
    try:
        spawner = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env,
                                   pass_fds=[*child_fds, *(e.fileno() for e in errfiles)], text=True)
        for fd in child_fds:
            close(fd)
        feeder = threading.Thread(target=feed, daemon=True)
        drainer = threading.Thread(target=drain, daemon=True)
        feeder.start()
        drainer.start()
        report = spawner.stdout.read().split("\n")
        spawner.wait()
        drainer.join()
        feeder.join()
    finally:
        for fd in list(fds):
            close(fd)
    cpu1, self1 = _cpu_jiffies(), os.times()
    help1 = [process_cpu(pid) for pid in helpers]
    lines = [line.split() for line in report if line.strip()]
    if spawner.returncode != 0 or len(lines) != len(stages) + 1 or lines[0][0] != "start":
        raise PipelineError(f"the process spawner failed (exit {spawner.returncode}): {report!r}")
    t0 = float(lines[0][1])
    out, t_end = [], counts["drained"]
    for stage, err, fields in zip(stages, errfiles, lines[1:]):
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
        err.close()
        _pid, code, rss, ut, st, t_exit = fields
        out.append(Stage(list(map(str, stage)), int(code), int(rss), float(ut), float(st), text))
        t_end = max(t_end, float(t_exit))
    res = Result(counts["in"], counts["out"], t_end - t0, out)
    if helpers and None not in help0 + help1:
        res.helper_cpu = sum(b - a for a, b in zip(help0, help1))
    if cpu0 and cpu1 and cpu1[1] > cpu0[1]:
        ncpu = os.cpu_count() or 1
        busy = (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]) * ncpu * res.wall  # core-seconds, whole machine
        # ours: this process, the spawner and the stages (the spawner's waited children count as its own)
        ours = sum(b - a for a, b in zip(self0[:4], self1[:4])) + (res.helper_cpu or 0.0)
        res.others_cores = max(0.0, (busy - ours) / res.wall)
    if check:
        for s in out:
            if s.returncode != 0:
                tail = " | ".join(s.stderr.strip().splitlines()[-3:]) or "no message"
                raise PipelineError(f"{s.name} exited with {s.returncode}: {tail}")
    if feed_err or sink_err:
        raise PipelineError(f"harness I/O failed: {(feed_err + sink_err)[0]!r}")
    return res


def floor_mib() -> float:
    """Peak RSS reported for `true`: the part of every stage's figure that comes from the harness."""
    return run_pipeline([["true"]], source=None).stages[0].rss_mib
