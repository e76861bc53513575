"""What a long service call tells a person watching it, as it goes: the one interface between the
services and a progress display (cli/progress.py draws it; the services print nothing).

``begin(what, total)`` starts a transfer of ``total`` bytes (None: not known), ``advance(n)``
says n more of them are done, ``say(line)`` replaces the status (a thaw being waited for, the
step under way), ``end()`` finishes the transfer's line.  The default tells nobody.
"""


class Watch:
    def begin(self, what, total=None):
        pass

    def advance(self, n):
        pass

    def say(self, line):
        pass

    def end(self):
        pass


NOBODY = Watch()


class Counted:
    """A binary reader passing through what it reads, telling ``watch.advance`` how much."""

    def __init__(self, raw, watch):
        self._raw, self._watch = raw, watch

    def read(self, n=-1):
        data = self._raw.read(n)
        if data:
            self._watch.advance(len(data))
        return data

    def readinto(self, buf):
        n = self._raw.readinto(buf)
        if n:
            self._watch.advance(n)
        return n

    def close(self):
        self._raw.close()
