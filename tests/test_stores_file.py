"""What only the file:// store does (the contract every store keeps is in test_store_contract.py):
its sidecars, the whole-file checksum, the destination marker; plus open_store and the user
configuration."""

import io
import json
import os
from pathlib import Path

import pytest

from zfsglacier.config import load_config
from zfsglacier.errors import IntegrityError, NotFoundError, StoreError, UsageError
from zfsglacier.plumbing.parts import MiB
from zfsglacier.stores import open_store
from zfsglacier.stores.file import FileStore

REPO = Path(__file__).resolve().parent.parent

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


def test_an_upload_stops_at_the_parts_a_readable_sidecar_can_list(store, tmp_path, monkeypatch):
    """A sidecar lists one SHA-256 per part and its reader reads at most MAX_SIDECAR: so an upload
    stops at MAX_PARTS parts (with --expected-size the parts grow instead), never writing an
    archive whose sidecar would be refused on read."""
    from zfsglacier.stores import file as fs
    side = {"version": 1, "id": "x" * 25, "size": 1 << 50, "sha256": "f" * 64, "created": 1e9,
            "metadata": {f"k{i}": "v" * 60 for i in range(30)}, "part_size": MiB, "parts": ["f" * 64] * fs.MAX_PARTS}
    assert len(json.dumps(side)) < fs.MAX_SIDECAR
    assert store.part_plan().max_parts == fs.MAX_PARTS
    big = store.part_plan(expected_size=4 << 40)
    assert big.first * fs.MAX_PARTS >= 4 << 40 and big.first <= fs.MAX_PART

    monkeypatch.setattr(fs, "MAX_PARTS", 3)
    with pytest.raises(StoreError, match="--expected-size"):
        store.upload(io.BytesIO(data_of(3 * MiB + 1)), {})
    assert os.listdir(tmp_path / "arch") == [".zfsglacier-destination"]
    assert store.upload(io.BytesIO(data_of(3 * MiB + 1)), {}, expected_size=3 * MiB + 1).size == 3 * MiB + 1


def test_every_store_option_is_a_destination_setting(tmp_path, monkeypatch):
    """What a store takes can be set for a destination in config.toml (connect_attempts, documented
    as a setting, was once refused there)."""
    from zfsglacier.config import DESTINATION_KEYS
    from zfsglacier.stores import STORE_OPTIONS
    assert set().union(*STORE_OPTIONS.values()) <= DESTINATION_KEYS
    cfg = tmp_path / "config.toml"
    cfg.write_text('[destinations.far]\nurl = "s3://b/p"\nconnect_attempts = 1\nread_timeout = 2\n'
                   'connect_timeout = 1.5\n')
    monkeypatch.setenv("ZG_CONFIG", str(cfg))
    store = open_store("far", config=load_config())
    assert store._client_args["connect_attempts"] == 1 and store._client_args["read_timeout"] == 2
    assert store.client.meta.config.read_timeout == 2 and store.client.meta.config.connect_timeout == 1.5
