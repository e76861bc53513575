"""Progress on stderr for a person watching: tqdm's line (what, bytes, the total where known,
percent, rate, ETA), finished with a newline when the transfer ends.  Only on a terminal unless
``--progress=always``; ``never`` turns it off.  stdout carries data and nothing else.

A status (waiting for a thaw, the step under way) is the line's description, so one line on the
terminal says both what is happening and how far it is.
"""

import os
import sys

from ..services.watch import Watch

MODES = ("auto", "always", "never")


def add_progress_option(p):
    p.add_argument("--progress", choices=MODES, default="auto",
                   help="a progress line on stderr: auto (default) on a terminal only, always (also to a "
                        "log file or pipe), never")


def _terminal(stream):
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _columns(stream):
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress(Watch):
    """``Progress(what, total, mode=args.progress)``; ``update(done)`` takes the bytes so far,
    ``advance(n)`` the bytes since; ``done()`` ends the line."""

    def __init__(self, what, total=None, *, mode="auto", stream=None):
        self.stream = stream or sys.stderr
        self.enabled = mode == "always" or (mode == "auto" and _terminal(self.stream))
        self.what, self.total, self._bar, self._status = what, total, None, False
        self._transfer = False  # begin() was called: say() names the step of that transfer

    def _open(self, status=False):
        if self._bar is not None and self._status and not status:
            self.end()  # the bytes begin: the status line stays as it was, the byte line starts below
        if self._bar is None:
            # imported here, when a line is drawn: 0.12 s of every command's start otherwise
            # (measured), and most runs (cron, pipes) draw none
            from tqdm import tqdm
            sized = _columns(self.stream) > 0  # a terminal of no size (a bare pty, a serial line): 80
            self._bar = tqdm(total=self.total, desc=self.what, file=self.stream, unit="B", unit_scale=True,
                             mininterval=0.5, dynamic_ncols=sized, ncols=None if sized else 80, leave=True,
                             bar_format="{desc}" if status else None)
            self._status = status
        return self._bar

    def begin(self, what, total=None):
        self.end()
        self.what, self.total, self._transfer = what, total, True

    def advance(self, n):
        if self.enabled:
            bar = self._open()
            bar.update(n)

    def update(self, done, note=""):
        if self.enabled:
            bar = self._open()
            bar.update(done - bar.n)

    def say(self, line):
        if not self.enabled:
            return
        if self._transfer:  # the transfer's line shows it from its first bytes on
            self.what = line
            if self._bar is not None:
                self._bar.set_description_str(line, refresh=True)
            return
        bar = self._open(status=self._bar is None or self._status)
        bar.set_description_str(line, refresh=True)

    def end(self):
        if self._bar is not None:
            self._bar.close()  # the final numbers, and the newline
            self._bar = None
        self._transfer = False

    done = end
