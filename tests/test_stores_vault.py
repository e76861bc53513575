"""What only the glacier:// store does, against the strict vault stand-in (moto has no vault
multipart or tree hashes): retrieval jobs reused, inventories, part-count and description limits.
The contract every store keeps is in test_store_contract.py.  The stand-in's clock is advanced
instead of waiting."""

import io
import os

import boto3
import pytest

from tests.servers.glacier_vault import GlacierStandIn
from zfsglacier.errors import NotFoundError, RestorePendingError, StoreError, UsageError
from zfsglacier.plumbing.parts import MiB, PartPlan
from zfsglacier.stores import open_store
from tests.helpers import aws_env
from zfsglacier.stores import vault as vault_module

HOUR = 3600.0


@pytest.fixture(scope="module")
def standin():
    server = GlacierStandIn(delays={"Expedited": 0, "Standard": 4 * HOUR, "Bulk": 10 * HOUR,
                                    "inventory": 4 * HOUR})
    with aws_env(AWS_ENDPOINT_URL=server.start()):
        yield server
    server.stop()


@pytest.fixture
def vault(standin, request):
    name = f"zg-{request.node.name[5:40]}"
    boto3.client("glacier").create_vault(vaultName=name)
    return name


def store_for(vault):
    return open_store(f"glacier://{vault}", part_size=MiB)  # 1 MiB parts and read ranges


def uploads_left(vault):
    return boto3.client("glacier").list_multipart_uploads(vaultName=vault)["UploadsList"]


def test_multipart_upload_thaw_and_verified_read(standin, vault):
    store = store_for(vault)
    data = os.urandom(5 * MiB + 777)
    before = standin.calls["upload_part"]
    info = store.upload(io.BytesIO(data), {"dataset": "tank/fs"}, jobs=3)
    assert standin.calls["upload_part"] - before == 6 and info.checksum.startswith("treehash:")
    with pytest.raises(RestorePendingError, match="no retrieval job"):
        store.open_read(info.id)
    status = store.request_thaw(info.id, "Standard")
    assert status.state == "thawing" and status.expected_wait == 5 * HOUR
    jobs = standin.calls["initiate_job"]
    assert store.request_thaw(info.id, "Standard").state == "thawing"
    assert standin.calls["initiate_job"] == jobs  # the running job is reused
    with pytest.raises(RestorePendingError, match="still running"):
        store.open_read(info.id)
    standin.clock.advance(4 * HOUR)
    assert store.thaw_status(info.id).state == "thawed"
    reads = standin.calls["job_output"]
    assert store.read_all(info.id, jobs=3) == data
    assert standin.calls["job_output"] - reads == 6  # six 1 MiB ranges
    assert not uploads_left(vault)


def test_small_stream_is_one_upload_archive(standin, vault):
    store = store_for(vault)
    info = store.upload(io.BytesIO(b"tiny"), {"a": "b"})
    assert standin.calls["upload_archive"] >= 1 and info.size == 4
    assert store.request_thaw(info.id, "Expedited").state == "thawed"  # stand-in: at once
    assert store.read_all(info.id) == b"tiny"



def test_listing_needs_an_inventory(standin, vault):
    store = store_for(vault)
    info = store.upload(io.BytesIO(b"listed"), {"snapshot": "s1"})
    with pytest.raises(RestorePendingError, match="inventory"):
        list(store.list())
    with pytest.raises(RestorePendingError, match="being prepared"):
        list(store.list())
    standin.clock.advance(4 * HOUR)
    [row] = [a for a in store.list() if a.id == info.id]
    assert row.metadata == {"snapshot": "s1"} and row.size == 6 and row.state == "frozen"
    assert store.stat(info.id).checksum == info.checksum





def test_stream_outgrowing_the_part_count_fails_early(vault, monkeypatch):
    """With 3 parts allowed instead of 10,000: the error comes before a 4th part is sent."""
    monkeypatch.setattr(vault_module, "vault_plan",
                        lambda *a, **k: PartPlan(MiB, max_parts=3, what="vault"))
    store = store_for(vault)
    with pytest.raises(StoreError, match="--expected-size"):
        store.upload(io.BytesIO(os.urandom(3 * MiB + 1)), {})
    assert not uploads_left(vault)


def test_description_limit_missing_vault_and_delete(standin, vault):
    store = store_for(vault)
    with pytest.raises(UsageError, match="1024"):
        store.open_upload({"notes": "x" * 1020})
    with pytest.raises(StoreError, match="vault zg-none does not exist") as err:
        store_for("zg-none").upload(io.BytesIO(b"x"), {})
    assert "\n" not in str(err.value)
    info = store.upload(io.BytesIO(b"bye"), {})
    store.delete(info.id)
    with pytest.raises(NotFoundError):
        store.delete(info.id)
    with pytest.raises(NotFoundError):
        store.request_thaw(info.id)
