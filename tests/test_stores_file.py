"""The file:// store (the default destination): atomic, verified, resumable; plus open_store and
the user configuration.  Also home of the kill -9 helper the S3 and vault tests share."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zfsglacier.config import load_config
from zfsglacier.errors import IntegrityError, NotFoundError, UsageError
from zfsglacier.parts import MiB
from zfsglacier.stores import open_store
from zfsglacier.stores.file import FileStore

REPO = Path(__file__).resolve().parent.parent

UPLOADER = r"""
import json, sys
from zfsglacier.stores import open_store
store = open_store(sys.argv[1], **json.loads(sys.argv[2]))
up = store.open_upload({"dataset": "tank/fs"}, jobs=int(sys.argv[3]))
while True:
    chunk = sys.stdin.buffer.read1(1 << 16)
    if not chunk:
        break
    up.write(chunk)
up.commit()
"""


def upload_then_kill(dest, options, head, stored_parts, want, jobs=1):
    """Run an upload in another process, feed it ``head``, kill -9 it once ``stored_parts()``
    reaches ``want``: what a crash in the middle of a backup leaves behind."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER, dest, json.dumps(options),
                             str(jobs)], stdin=subprocess.PIPE, env=env, cwd=REPO)
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


@pytest.fixture
def store(tmp_path):
    s = open_store(f"file://{tmp_path}/arch", part_size=1 * MiB)
    s.init()
    return s


def data_of(size, seed=1):
    return (bytes(range(256)) * (size // 256 + 1))[:size] if seed == 0 else os.urandom(size)


def test_roundtrip_several_parts_with_sidecar(store, tmp_path):
    data = data_of(5 * MiB + 123)
    info = store.upload(io.BytesIO(data), {"dataset": "tank/fs", "snapshot": "s1"}, jobs=3)
    assert info.size == len(data) and info.state == "ready"
    assert store.read_all(info.id, jobs=3) == data
    side = json.loads((tmp_path / "arch" / f"{info.id}.zg.json").read_text())
    assert side["metadata"] == {"dataset": "tank/fs", "snapshot": "s1"}
    assert len(side["parts"]) == 6 and side["sha256"] == info.sha256
    assert [a.id for a in store.list()] == [info.id]
    assert store.stat(info.id).metadata["snapshot"] == "s1"


def test_small_and_empty_streams(store):
    for data in (b"hi", b""):
        info = store.upload(io.BytesIO(data), {})
        assert store.read_all(info.id) == data and store.stat(info.id).size == len(data)


def test_partial_upload_is_never_listed_and_abort_leaves_nothing(store, tmp_path):
    up = store.open_upload({"k": "v"})
    up.write(data_of(3 * MiB))  # two parts sent, the third held: the upload has begun
    names = os.listdir(tmp_path / "arch")
    assert any(n.endswith(".zg.partial") for n in names)
    assert list(store.list()) == []
    [inc] = store.incomplete_uploads()
    assert inc.metadata == {"k": "v"}
    up.abort()
    assert os.listdir(tmp_path / "arch") == [".zfsglacier-destination"]


def test_exception_inside_the_block_aborts(store, tmp_path):
    with pytest.raises(RuntimeError):
        with store.open_upload({}) as up:
            up.write(data_of(3 * MiB))
            raise RuntimeError("upstream died")
    assert os.listdir(tmp_path / "arch") == [".zfsglacier-destination"]


def test_flipped_byte_is_caught_on_read(store, tmp_path):
    data = data_of(3 * MiB)
    info = store.upload(io.BytesIO(data), {})
    path = tmp_path / "arch" / f"{info.id}.zg"
    raw = bytearray(path.read_bytes())
    raw[2 * MiB + 5] ^= 1
    path.write_bytes(bytes(raw))
    with store.open_read(info.id) as r:
        assert r.read(2 * MiB) == data[:2 * MiB]  # parts before the damage are fine
        with pytest.raises(IntegrityError, match="part 3"):
            r.read()


def test_whole_checksum_is_checked_before_the_last_byte(store, tmp_path):
    info = store.upload(io.BytesIO(data_of(2 * MiB + 1)), {})
    side_path = tmp_path / "arch" / f"{info.id}.zg.json"
    side = json.loads(side_path.read_text())
    side["sha256"] = "0" * 64
    side_path.write_text(json.dumps(side))
    with store.open_read(info.id) as r:
        assert len(r.read(2 * MiB)) == 2 * MiB
        with pytest.raises(IntegrityError, match="whole"):
            r.read(1)


def test_missing_archives_delete_and_thaw(store):
    info = store.upload(io.BytesIO(b"abc"), {})
    assert store.request_thaw(info.id).state == "ready"
    assert store.thaw_status(info.id).state == "ready"
    store.delete(info.id)
    for op in (store.stat, store.delete, store.thaw_status, store.open_read):
        with pytest.raises(NotFoundError):
            op(info.id)
    with pytest.raises(NotFoundError):
        store.stat("../etc/passwd")


def test_resume_after_kill_9_sends_only_missing_parts(store, tmp_path):
    data = data_of(6 * MiB + 4321)
    arch = tmp_path / "arch"

    def stored():
        partials = list(arch.glob("*.zg.partial")) if arch.exists() else []
        return partials[0].stat().st_size // MiB if partials else 0

    upload_then_kill(store.url, {"part_size": MiB}, data[:3 * MiB + 1], stored, want=3)
    assert list(store.list()) == [] and len(store.incomplete_uploads()) == 1

    up = store.open_resume(jobs=2)
    up.write(data)
    info = up.commit()
    assert up.stats["parts_reused"] == 3 and up.stats["parts_sent"] == 4
    assert store.read_all(info.id) == data
    assert store.stat(info.id).metadata == {"dataset": "tank/fs"}
    assert store.incomplete_uploads() == []
    assert not list(arch.glob("*.partial*"))


def test_resume_with_other_bytes_is_refused_and_keeps_the_partial(store, tmp_path):
    up = store.open_upload({})
    up.write(data_of(3 * MiB))
    up._pipeline.cancel()  # as if killed: parts stay, nothing completes
    up.session.release()
    with pytest.raises(NotFoundError, match="starts with this input"):
        store.resume_upload(io.BytesIO(data_of(3 * MiB)))
    assert len(store.incomplete_uploads()) == 1


def test_resume_with_nothing_to_resume(store):
    with pytest.raises(NotFoundError, match="no incomplete upload"):
        store.open_resume()


def test_metadata_is_checked_before_anything_is_written(store, tmp_path):
    with pytest.raises(UsageError, match="metadata key"):
        store.open_upload({"Bad Key": "x"})
    with pytest.raises(UsageError, match="printable ASCII"):
        store.open_upload({"k": "caf\u00e9"})
    assert os.listdir(tmp_path / "arch") == [".zfsglacier-destination"]


# ---- open_store and the configuration

def test_open_store_urls(tmp_path):
    assert isinstance(open_store(f"file://{tmp_path}"), FileStore)
    assert open_store(str(tmp_path)).path == str(tmp_path)
    assert open_store("s3://bucket/a/b", storage_class="glacier").prefix == "a/b"
    assert open_store("glacier://vault").vault == "vault"
    for bad in ("ftp://x", "file://relative/x", "s3:///nobucket", "glacier://v/extra"):
        with pytest.raises(UsageError):
            open_store(bad)
    with pytest.raises(UsageError, match="do not apply"):
        open_store(f"file://{tmp_path}", storage_class="GLACIER")
    with pytest.raises(UsageError, match="storage class"):
        open_store("s3://b/p", storage_class="COLDEST")


def test_named_destination_from_config(tmp_path, monkeypatch):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'catalog = "{tmp_path}/cat.db"\ndefault_destination = "here"\n'
                   f'[destinations.here]\nurl = "file://{tmp_path}/named"\npart_size = 2097152\n'
                   f'jobs = 3\n[destinations.off]\nurl = "s3://bkt/p"\nstorage_class = "GLACIER"\n')
    monkeypatch.setenv("ZG_CONFIG", str(cfg))
    store = open_store("here")
    assert store.path == f"{tmp_path}/named" and store.part_size == 2 * MiB
    assert open_store("off").storage_class == "GLACIER"
    assert open_store("off", storage_class="STANDARD").storage_class == "STANDARD"
    config = load_config()
    assert config.catalog == f"{tmp_path}/cat.db" and config.default_destination == "here"
    with pytest.raises(UsageError, match="unknown destination 'nope'"):
        open_store("nope")


def test_config_typos_and_missing_file(tmp_path, monkeypatch):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[destinations.x]\nurl = "s3://b/p"\nstorage_clas = "GLACIER"\n')
    monkeypatch.setenv("ZG_CONFIG", str(cfg))
    with pytest.raises(UsageError, match="storage_clas"):
        load_config()
    cfg.write_text("[destinations\n")
    with pytest.raises(UsageError, match=str(cfg)):
        load_config()
    monkeypatch.setenv("ZG_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert load_config().destinations == {}
    assert load_config().catalog == str(tmp_path / "data" / "zfsglacier" / "catalog.db")


def test_read_resumes_at_an_offset_still_verifying_ranges(store, tmp_path):
    data = data_of(3 * MiB + 10)
    info = store.upload(io.BytesIO(data), {})
    assert store.open_read(info.id, start=MiB + 5).read() == data[MiB + 5:]
    assert store.open_read(info.id, start=len(data)).read() == b""
    path = tmp_path / "arch" / f"{info.id}.zg"
    raw = bytearray(path.read_bytes())
    raw[2 * MiB + 1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="part 3"):
        store.open_read(info.id, start=2 * MiB).read()


def test_archive_ids_are_checked_but_vault_style_ids_pass():
    from zfsglacier.stores.base import check_id
    assert check_id("-Ab_9-x") == "-Ab_9-x"  # AWS vault ids are base64url: may start with "-"
    for bad in ("", "a/b", "..", ".hidden", "a\nb", "x" * 300):
        with pytest.raises(NotFoundError):
            check_id(bad)


def test_a_directory_is_a_destination_only_once_marked(tmp_path):
    """An external disk that is not mounted is an empty mount point (or no directory): nothing is
    written there; zg-init makes a destination (its parent must exist); old stores are adopted."""
    from zfsglacier.errors import StoreError
    mnt = tmp_path / "mnt" / "usb"
    for make in (lambda: None, lambda: mnt.mkdir(parents=True)):  # no directory, then an empty mount point
        make()
        s = open_store(f"file://{mnt}")
        with pytest.raises(StoreError, match="is the disk mounted|is it mounted"):
            s.upload(io.BytesIO(b"x" * 100), {})
        with pytest.raises(StoreError):
            list(s.list())
        assert not mnt.exists() or os.listdir(mnt) == []
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"file://{tmp_path}/nowhere/x").init()
    assert not (tmp_path / "nowhere").exists()
    assert "mounted at" in open_store(f"file://{mnt}").init()
    assert "already" in open_store(f"file://{mnt}").init()
    info = open_store(f"file://{mnt}").upload(io.BytesIO(b"x" * 100), {})
    # a store written before markers existed is adopted (and marked) on first use
    (mnt / ".zfsglacier-destination").unlink()
    assert [a.id for a in open_store(f"file://{mnt}").list()] == [info.id]
    assert (mnt / ".zfsglacier-destination").exists()
    # a marker that is not ours is refused
    (mnt / ".zfsglacier-destination").write_text("hello")
    with pytest.raises(StoreError, match="not a zfsglacier destination marker"):
        list(open_store(f"file://{mnt}").list())
