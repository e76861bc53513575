"""What every command shares: one-line errors with documented exit codes, binary stdio."""

import argparse
import os
import signal
import sqlite3
import sys
import threading

from .. import __version__
from ..errors import CatalogError, OutputClosedError, UsageError, ZgError


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

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_args(self, args=None, namespace=None):
        """Options may come after positional arguments (`zg-ls DEST tank/db --json`)."""
        if self._subparsers is None:
            return self.parse_intermixed_args(args, namespace)
        return super().parse_args(args, namespace)


def parser(prog, description):
    p = ArgumentParser(prog=prog, description=description)
    p.add_argument("--version", action="version", version=f"zfsglacier {__version__}")
    return p


def run(prog, body, argv=None):
    """Run ``body(argv)``; turn every expected failure into one stderr line and an exit code."""
    if argv is None:
        argv = sys.argv[1:]
    _catch_stop_signals()
    try:
        return body(argv) or 0
    except ZgError as err:
        _say(prog, err)
        return err.exit_code
    except BrokenPipeError:
        _silence_stdout()
        _say(prog, OutputClosedError("output closed early (broken pipe): the reader stopped"))
        return OutputClosedError.exit_code
    except Terminated as stop:
        _say(prog, f"stopped by {signal.Signals(stop.signum).name}; cleaned up (nothing half-done is recorded)")
        return 128 + stop.signum
    except KeyboardInterrupt:
        _say(prog, "interrupted")
        return 130
    except sqlite3.DatabaseError as err:  # the catalog was damaged under a running command
        _say(prog, CatalogError(f"catalog: {err}: `zg-catalog rebuild DEST --key KEY` replaces a damaged one"))
        return CatalogError.exit_code
    except Exception as err:  # a bug: still one line, with a way to get the traceback
        if os.environ.get("ZG_DEBUG"):
            raise
        _say(prog, f"internal error: {type(err).__name__}: {err} (set ZG_DEBUG=1 for a traceback)")
        return 1


def _say(prog, message):
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


def binary_stdin():
    """Unbuffered fd 0: no lock that a reading thread could hold at interpreter exit."""
    return open(0, "rb", buffering=0, closefd=False)


class _FdWriter:
    """Unbuffered fd 1 that always writes everything it is given."""

    def __init__(self, fd):
        self._fd = fd

    def fileno(self):
        return self._fd

    def write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        return len(data)

    def flush(self):
        pass


def binary_stdout():
    return _FdWriter(1)


def refuse_terminal_output(out, prog):
    """Binary archives on a terminal help nobody and can wedge it."""
    try:
        if os.isatty(out.fileno()):
            raise UsageError("refusing to write binary data to a terminal: redirect stdout to a file or pipe")
    except (OSError, ValueError):
        pass
