"""Progress on stderr, only when stderr is a terminal (stdout carries data and nothing else)."""

import os
import sys
import time

from ..services.cost import human_bytes


class Progress:
    def __init__(self, what, total=None, stream=None):
        self.stream = stream or sys.stderr
        self.what = what
        self.total = total
        self.start = time.monotonic()
        self.last = 0.0
        try:
            self.enabled = os.isatty(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            self.enabled = False

    def update(self, done, note=""):
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.5:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6)
        of = f" of {human_bytes(self.total)}" if self.total else ""
        self.stream.write(f"\r{self.what}: {human_bytes(done)}{of} at {human_bytes(int(rate))}/s {note}\033[K")
        self.stream.flush()

    def say(self, line):
        """A status line (waiting for a thaw...): on a terminal it replaces the previous one."""
        if self.enabled:
            self.stream.write(f"\r{line}\033[K")
            self.stream.flush()

    def done(self):
        if self.enabled and self.last:
            self.stream.write("\n")
            self.stream.flush()
