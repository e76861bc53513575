"""What every command shares: one-line errors with documented exit codes, binary stdio."""

import argparse
import errno
import gc
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

from .. import __version__
from ..errors import CatalogError, InputError, OutputClosedError, RestorePendingError, UsageError, ZgError
from ..plumbing.writes import START_WRITEBACK, start_writeback, write_all


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd stop, `timeout`) or SIGHUP (a closed terminal): handled as Ctrl-C is, so
    every clean-up runs (an upload is aborted, never left recorded as complete); the exit code is
    128 + the signal's number, as a shell reports a process that the signal killed."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame):
    for sig in _STOP_SIGNALS:  # a second one must not cut the clean-up short (SIGKILL still can)
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _catch_stop_signals():
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:  # an ignored SIGHUP (nohup) stays ignored
            signal.signal(sig, _raise_terminated)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors as a ZgError (exit 2, one line) instead of exiting."""

    examples, notes = (), None

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")

    def format_help(self):
        text = super().format_help()
        if self.examples:
            width = max(40, shutil.get_terminal_size().columns - 2)  # as argparse wraps its own text
            text += "\nexamples:\n" + "".join(
                f"  {cmd}\n" + textwrap.fill(why, width, initial_indent=" " * 6, subsequent_indent=" " * 6) + "\n"
                for cmd, why in self.examples)
        if self.notes:
            text += "\n" + self.notes.strip("\n") + "\n"
        return text

    def parse_args(self, args=None, namespace=None):
        """Options may come after positional arguments (`zg-ls DEST tank/db --json`).  A vault's
        archive ids are 138 characters of base64url and start with '-' one time in 64, which
        argparse takes for an option ("the following arguments are required: ID"): an argument of
        40 or more such characters after one '-' is no option of ours, so it is an argument."""
        args = list(sys.argv[1:] if args is None else args)
        held = {f"\0{i}": a for i, a in enumerate(args) if _LOOKS_LIKE_ID.match(a)}
        args = [f"\0{i}" if f"\0{i}" in held else a for i, a in enumerate(args)]
        if self._subparsers is None:
            ns = self.parse_intermixed_args(args, namespace)
        else:
            ns = super().parse_args(args, namespace)
        for name, value in vars(ns).items():
            if isinstance(value, str) and value in held:
                setattr(ns, name, held[value])
            elif isinstance(value, list):
                setattr(ns, name, [held.get(v, v) if isinstance(v, str) else v for v in value])
        return ns


_LOOKS_LIKE_ID = re.compile(r"^-[A-Za-z0-9_][A-Za-z0-9_-]{38,}$")


def parser(prog, description, examples=(), notes=None):
    """A command's parser; ``examples`` are (command line, what it does) pairs that end its --help
    (tests/test_help.py parses every one of them with this parser, so none can go stale), then
    ``notes``, text shown as it is written."""
    p = ArgumentParser(prog=prog, description=description)
    p.examples, p.notes = list(examples), notes
    p.add_argument("--version", action="version", version=f"zfsglacier {__version__}")
    return p


# A report (zg-ls, zg-verify...) whose reader stops early (`| head`) ends as Unix tools do, quietly, with
# the status a shell shows for a process SIGPIPE killed; a filter's or a key's output cut short is an
# error (exit 8): the data went nowhere.
SIGPIPE_STATUS = 128 + signal.SIGPIPE


def run(prog, body, argv=None, *, report=False, hooks=False):
    """Run ``body(argv)``; turn every expected failure into one stderr line and an exit code.
    ``report``: stdout is a report for people and scripts, not data (see SIGPIPE_STATUS).
    ``hooks``: the command is one that cron runs (zg-backup, zg-prune, zg-verify, zg-drill): the config's
    [hooks] on_success / on_failure command runs after it (see run_hook)."""
    code = _run(prog, body, sys.argv[1:] if argv is None else argv, report)
    if hooks:
        run_hook(prog, code)
    return code


def run_hook(prog, code):
    """The config's ``on_success`` (exit 0) or ``on_failure`` (any other) shell command, e.g. a
    healthchecks.io ping, with ZG_COMMAND, ZG_EXIT and ZG_ERROR (the error line, if any) in its
    environment; its output goes to stderr (stdout is the command's).  A hook that fails, or runs
    longer than HOOK_TIMEOUT, is a warning: it never changes the command's exit code."""
    from ..config import load_config
    try:
        hooks = load_config().hooks
    except ZgError:
        return  # the command has said what is wrong with the configuration
    command = hooks.get("on_success" if code == 0 else "on_failure")
    if not command:
        return
    env = dict(os.environ, ZG_COMMAND=prog, ZG_EXIT=str(code), ZG_ERROR=_said[-1] if _said else "")
    which = "on_success" if code == 0 else "on_failure"
    try:
        done = subprocess.run(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL, stdout=2,
                              timeout=HOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        _warn(prog, f"the {which} hook ran longer than {HOOK_TIMEOUT} s and was stopped")
    except OSError as err:
        _warn(prog, f"the {which} hook could not run: {err.strerror or err}")
    else:
        if done.returncode:
            _warn(prog, f"the {which} hook exited {done.returncode}")


HOOK_TIMEOUT = 120
_said = []  # the error lines this process wrote (the last goes to a hook as ZG_ERROR)


def _warn(prog, message):
    try:
        sys.stderr.write(f"{prog}: warning: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


def _run(prog, body, argv, report):
    # Python's cycle collector ran ~140 times in one zg-fetch, mostly while botocore loads its
    # service models, walking them again each time; collecting after 50,000 new objects instead
    # of 700: zg-fetch of 213 MB from RGW took 0.72 CPU-s instead of 0.77 (median of 8 runs).
    # Little here makes cycles: memory is the transfer buffers, not objects.
    gc.set_threshold(50_000, 20, 100)
    _catch_stop_signals()
    _text_stdout()
    _notices(prog)
    try:
        try:
            code = body(argv) or 0
        except SystemExit as done:  # argparse after --help or --version: its output is flushed below
            code = done.code if isinstance(done.code, int) else 0
        sys.stdout.flush()
        return code
    except OutputClosedError as err:
        _silence_stdout()
        if report and err.broken_pipe:
            return SIGPIPE_STATUS
        _say(prog, err)
        return err.exit_code
    except ZgError as err:
        _say(prog, _with_hint(err))
        return err.exit_code
    except BrokenPipeError:
        _silence_stdout()
        if report:
            return SIGPIPE_STATUS
        _say(prog, OutputClosedError("output closed early (broken pipe): the reader stopped"))
        return OutputClosedError.exit_code
    except Terminated as stop:
        done = "nothing half-done is recorded" if getattr(stop, "__notes__", None) else \
            "cleaned up (nothing half-done is recorded)"
        _say(prog, _noted(stop, f"stopped by {signal.Signals(stop.signum).name}; {done}"))
        return 128 + stop.signum
    except KeyboardInterrupt as stop:
        _say(prog, _noted(stop, "interrupted"))
        return 130
    except _catalog_damage() as err:  # the catalog was damaged under a running command
        _say(prog, CatalogError(f"catalog: {err}: `zg-catalog rebuild DEST --key KEY` replaces a damaged one"))
        return CatalogError.exit_code
    except Exception as err:  # a bug: still one line, with a way to get the traceback
        if os.environ.get("ZG_DEBUG"):
            raise
        _say(prog, f"internal error: {type(err).__name__}: {err} (set ZG_DEBUG=1 for a traceback)")
        return 1


def _catalog_damage():
    """sqlite3's error class once a catalog was opened (no catalog, no such error: nothing to catch).
    Looked up, not imported, so that the filters do not load sqlite3 for nothing."""
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3.DatabaseError if sqlite3 is not None else ()


def _notices(prog):
    """What the layers below announce on the ``zfsglacier`` logger (a retry, say) goes to stderr
    on a terminal, as one line; under cron, nothing but the final error line."""
    log = logging.getLogger("zfsglacier")
    log.propagate = False
    log.handlers.clear()
    try:
        tty = os.isatty(2)
    except OSError:
        tty = False
    if tty:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
        log.addHandler(handler)
    else:
        log.addHandler(logging.NullHandler())


# What a user runs to thaw an archive (zg-fetch requests the thaw; --no-wait returns at once).
THAW_COMMAND = "zg-fetch --no-wait {dest} {id}"


def _with_hint(err):
    """The error's line, with what to run where the layer below knows only what is wrong."""
    if isinstance(err, RestorePendingError) and err.thaw:
        dest, archive_id = err.thaw
        return (f"{err}: run `{THAW_COMMAND.format(dest=dest, id=archive_id)}` to request a restore, "
                f"and read it once the restore is done")
    return _noted(err, str(err))


def _noted(err, line):
    """``line`` and the notes the layers below added to ``err`` on its way up (what was kept)."""
    return "; ".join([line, *getattr(err, "__notes__", ())])


def _say(prog, message):
    _said.append(str(message))
    try:
        sys.stderr.write(f"{prog}: error: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


def _silence_stdout():
    """After EPIPE, point fd 1 at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


# --- the one boundary for input and output errors ----------------------------------------------
# Every byte a command writes goes through output_error() when the write fails, and every byte it
# reads from stdin through InputError: a full disk, a closed pipe or an I/O error is exit 8 (or 19
# for input), never an "internal error", and never mistaken for a damaged archive further in.

_WHY = {errno.EPIPE: "the reader stopped (broken pipe)", errno.ENOSPC: "no space left on the device",
        errno.EBADF: "it is closed", errno.EIO: "an I/O error", errno.EDQUOT: "the disk quota is exceeded",
        errno.EFBIG: "the file is too large"}


def output_error(err, what="standard output"):
    """The OutputClosedError (exit 8) for an OSError met writing ``what``."""
    return OutputClosedError(f"cannot write {what}: {_WHY.get(err.errno, err.strerror or err)}",
                             broken_pipe=err.errno == errno.EPIPE and what == "standard output")


class _FdWriter:
    """Unbuffered fd that always writes everything it is given, at most 1 MiB per write(2)
    (plumbing/writes.py says why)."""

    def __init__(self, fd, what="standard output"):
        self._fd, self._what = fd, what

    def fileno(self):
        return self._fd

    def write(self, data):
        try:
            write_all(self._fd, data)
        except OSError as err:
            raise output_error(err, self._what) from None
        self._wrote(len(data))
        return len(data)

    def _wrote(self, n):
        pass

    def flush(self):
        pass


class _RawOut(io.RawIOBase):
    """fd 1 under sys.stdout: print() and friends get the same errors as binary output."""

    def writable(self):
        return True

    def fileno(self):
        return 1

    def write(self, data):
        try:
            return os.write(1, data)
        except OSError as err:
            raise output_error(err) from None


def _text_stdout():
    """Put the text stdout on _RawOut (also when fd 1 was closed at start: Python then sets
    sys.stdout to None and print() would quietly print nothing)."""
    if sys.stdout is not None and sys.stdout is not sys.__stdout__:
        return  # someone (a test's capture) replaced it: leave it alone
    tty = False
    try:
        tty = os.isatty(1)
    except OSError:
        pass
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(_RawOut()), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=tty)


class _FdReader(io.RawIOBase):
    """Unbuffered fd 0: no lock that a reading thread could hold at interpreter exit."""

    def readable(self):
        return True

    def fileno(self):
        return 0

    def read(self, n=-1):
        if n is None or n < 0:
            return self.readall()
        try:
            return os.read(0, n)  # no bytearray in between: this is the hot path of every filter
        except OSError as err:
            raise _input_error(err) from None

    def readinto(self, buf):
        try:
            return os.readv(0, [buf])
        except OSError as err:
            raise _input_error(err) from None


def _input_error(err):
    return InputError(f"cannot read standard input: {_WHY.get(err.errno, err.strerror or err)}")


def binary_stdin():
    return _FdReader()


def binary_stdout():
    return _FdWriter(1)


def output_file(fileobj, name):
    """Writes to a regular file opened as ``fileobj`` whose write and flush failures are output
    errors naming ``name``; ``flush()`` makes what was written durable (fsync)."""
    return _FileOut(fileobj.fileno(), name)


class _FileOut(_FdWriter):
    """Writes start the disk writes at once, so ``flush()``'s fsync finds little left to do."""

    def __init__(self, fd, name):
        super().__init__(fd, name)
        self._advised = self._end = os.fstat(fd).st_size  # writes go at the end: a new file, or appended to

    def _wrote(self, n):
        self._end += n
        if self._advised is not None and self._end - self._advised >= START_WRITEBACK:
            ok = start_writeback(self._fd, self._advised, self._end - self._advised)
            self._advised = self._end if ok else None

    def flush(self):
        try:
            os.fsync(self._fd)
        except OSError as err:
            raise output_error(err, self._what) from None


def refuse_terminal_output(out, prog):
    """Binary archives on a terminal help nobody and can wedge it."""
    try:
        if os.isatty(out.fileno()):
            raise UsageError("refusing to write binary data to a terminal: redirect stdout to a file or pipe")
    except (OSError, ValueError):
        pass
