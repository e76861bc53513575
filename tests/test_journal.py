"""The resume journal's rules (plumbing/journal.py): a part is recorded, durably, before it may be
sent; a part at a recorded offset must be the recorded bytes; damage is refused, a torn last line
(a kill inside write) is dropped.  Across stores: tests/test_store_contract.py; on ZFS:
tests/test_resume_zfs.py."""

import hashlib
import os

import pytest

from zfsglacier.errors import ResumeMismatchError
from zfsglacier.plumbing.journal import Journal


def sha(data):
    return hashlib.sha256(data).digest()


def test_records_survive_and_are_held_to(tmp_path):
    path = str(tmp_path / "d" / "j.journal")
    j = Journal.create(path, {"key": "k"})
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    j.opened("upload-1")
    j.admit(0, 10, sha(b"a" * 10))
    j.admit(10, 10, sha(b"b" * 10))
    j.admit(0, 10, sha(b"a" * 10))  # the same bytes again: allowed, not recorded twice
    j.close()
    again = Journal.load(path)
    assert again.meta == {"key": "k"} and again.ref == "upload-1"
    assert again.parts == {0: (10, sha(b"a" * 10).hex()), 10: (10, sha(b"b" * 10).hex())}
    with pytest.raises(ResumeMismatchError, match="bytes 10..20 of the archive differ"):
        again.admit(10, 10, sha(b"c" * 10))
    with pytest.raises(ResumeMismatchError, match="bytes 0..9 of the archive differ"):
        again.admit(0, 9, sha(b"a" * 9))  # another cut of a recorded part
    with pytest.raises(ResumeMismatchError, match="cross parts"):
        again.admit(5, 10, sha(b"x" * 10))
    with pytest.raises(ResumeMismatchError, match="cross parts"):
        again.admit(15, 10, sha(b"x" * 10))
    again.admit(20, 5, sha(b"d" * 5))  # past what was recorded: new bytes may go
    assert again.covers(20, 5) and not again.covers(20, 4) and again.recorded_bytes == 25


def test_a_torn_last_line_is_dropped_and_damage_refused(tmp_path):
    path = str(tmp_path / "j.journal")
    j = Journal.create(path, {})
    j.admit(0, 10, sha(b"a" * 10))
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"part":[10,10,"')  # killed inside write(): that part was never sent
    torn = Journal.load(path)
    assert list(torn.parts) == [0]
    torn.admit(10, 10, sha(b"z" * 10))  # so other bytes may go there
    torn.close()
    assert list(Journal.load(path).parts) == [0, 10]
    data = bytearray(open(path, "rb").read())
    data[data.index(b'"part"') + 2] ^= 1  # one bit, in a complete line
    open(path, "wb").write(bytes(data))
    with pytest.raises(ResumeMismatchError, match="damaged at line 2"):
        Journal.load(path)


def test_a_journal_is_never_overwritten_and_discard_removes_it(tmp_path):
    path = str(tmp_path / "j.journal")
    j = Journal.create(path, {})
    with pytest.raises(FileExistsError):
        Journal.create(path, {})
    j.discard()
    assert not os.path.exists(path)
    j.discard()  # twice: nothing left to do


def test_overlapping_records_are_refused_on_load(tmp_path):
    path = str(tmp_path / "j.journal")
    j = Journal.create(path, {})
    j.admit(0, 10, sha(b"a"))
    j._append({"part": [5, 10, "00" * 32]})  # what admit() never writes
    j.close()
    with pytest.raises(ResumeMismatchError, match="overlapping"):
        Journal.load(path)
