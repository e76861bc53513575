"""Part-size policy and the shared part machinery (zfsglacier.parts): the 10,000-part wall is
never hit by surprise, memory stays bounded, parts come back in order, errors surface."""

import hashlib
import os
import time

import pytest

from zfsglacier.errors import StoreError, UsageError
from zfsglacier.plumbing.parts import (GiB, MAX_PARTS, MiB, TiB, OrderedReader, PartPipeline, fixed_plan, retry_call,
                                       s3_plan, too_big_message, vault_plan)


def test_s3_default_plan_covers_5_tib_within_s3_part_limits():
    plan = s3_plan()
    sizes = [plan.size(n) for n in range(1, MAX_PARTS + 1)]
    assert plan.capacity == sum(sizes) >= 5 * TiB
    assert all(5 * MiB <= s <= 5 * GiB for s in sizes)
    assert sizes == sorted(sizes) and sizes[0] == 16 * MiB
    assert plan.size(800) == 16 * MiB and plan.size(801) == 32 * MiB  # growth every 800 parts
    assert "5.85 TiB" in plan.describe(4)


@pytest.mark.parametrize("expected", [1, 20 * GiB, 1 * TiB, 5 * TiB])
def test_s3_plan_with_expected_size_fits_with_room(expected):
    plan = s3_plan(expected)
    assert plan.first * 8000 >= expected * 1.25
    assert plan.capacity >= expected * 1.25
    assert all(5 * MiB <= plan.size(n) <= 5 * GiB for n in range(1, MAX_PARTS + 1, 97))


def test_s3_plan_refuses_impossible_sizes():
    with pytest.raises(UsageError, match="5 TiB"):
        s3_plan(6 * TiB)
    with pytest.raises(UsageError, match="5 MiB"):
        s3_plan(first=4 * MiB)


def test_vault_plan_is_one_power_of_two():
    assert vault_plan().first == 128 * MiB and vault_plan().capacity >= 1 * TiB
    for expected in (1, 3 * GiB, 2 * TiB, 30 * TiB):
        plan = vault_plan(expected)
        assert plan.first & (plan.first - 1) == 0 and MiB <= plan.first <= 4 * GiB
        assert plan.capacity >= expected and plan.size(MAX_PARTS) == plan.first
    with pytest.raises(UsageError, match="vault"):
        vault_plan(50 * TiB)
    with pytest.raises(UsageError, match="power of two"):
        vault_plan(part_size=3 * MiB)


def run(pipeline, data, chunk=100_000):
    for i in range(0, len(data), chunk):
        pipeline.write(data[i:i + chunk])
    return pipeline.finish()


def test_pipeline_cuts_numbered_parts_and_keeps_order():
    seen, starts = {}, []
    data = os.urandom(10 * 1000 + 7)
    pipe = PartPipeline(lambda n: 1000, lambda p: seen.setdefault(p.number, (p.offset, bytes(p.data))),
                        jobs=3, start=lambda: starts.append(1))
    result = run(pipe, data, chunk=333)
    assert starts == [1]
    assert [p.number for p in result.parts] == list(range(1, 12))
    assert b"".join(seen[n][1] for n in sorted(seen)) == data
    assert all(seen[p.number][0] == p.offset for p in result.parts)
    assert result.parts[-1].size == 7 and result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).digest()


def test_part_buffers_are_used_again_and_the_whole_hash_is_in_order():
    """Parts are filled into at most jobs + 1 buffers (never a new one per part); a buffer is
    filled again only once its part is both sent and in the whole's hash, which sees the parts
    in order although later parts finish first."""
    buffers, sent = {}, {}  # buffers kept alive: a new one cannot take a freed one's id

    def handle(part):
        time.sleep((4 - part.number % 4) / 1000)
        buffers[id(part.data)] = part.data
        sent[part.number] = bytes(part.data)  # what was sent, as it was when sent

    data = os.urandom(40 * 1000 + 3)
    result = run(PartPipeline(lambda n: 1000, handle, jobs=3), data, chunk=777)
    assert b"".join(sent[n] for n in sorted(sent)) == data
    assert len(sent) == 41 and len(buffers) <= 3 + 1 + 1  # + the last part, bytes of its own
    assert result.sha256 == hashlib.sha256(data).digest()


def test_stream_of_one_part_is_returned_whole_and_nothing_starts():
    calls = []
    pipe = PartPipeline(lambda n: 1000, calls.append, jobs=2, start=lambda: calls.append("start"))
    result = run(pipe, b"x" * 1000)
    assert result.single == b"x" * 1000 and result.parts == [] and calls == []


def test_parts_in_flight_never_exceed_jobs():
    """Memory bound: the writer waits while `jobs` parts are unfinished."""
    def slow(part):
        time.sleep(0.002)

    pipe = PartPipeline(lambda n: 1000, slow, jobs=3)
    run(pipe, bytes(40 * 1000 + 1), chunk=5000)
    assert pipe.in_flight_peak == 3


def test_part_error_surfaces_on_the_writer_side():
    def handle(part):
        if part.number == 2:
            raise StoreError("part 2 failed")

    pipe = PartPipeline(lambda n: 10, handle, jobs=1)
    with pytest.raises(StoreError, match="part 2 failed"):
        run(pipe, bytes(1000), chunk=10)


def test_a_failed_part_stops_the_others_without_waiting_on_it():
    """Parts skipped after a failure are never hashed: nothing may wait for them (no hang)."""
    def handle(part):
        time.sleep(0.001)
        if part.number == 3:
            raise StoreError("part 3 failed")

    pipe = PartPipeline(lambda n: 10, handle, jobs=4)
    with pytest.raises(StoreError, match="part 3 failed"):
        run(pipe, bytes(5000), chunk=7)
    pipe.cancel()


def test_stream_beyond_capacity_fails_before_the_last_part_is_sent():
    plan = fixed_plan(10, max_parts=3, what="vault")
    sent = []
    pipe = PartPipeline(plan.size, lambda p: sent.append(p.number), jobs=1,
                        capacity=plan.capacity, too_big=lambda: StoreError(too_big_message(plan)))
    with pytest.raises(StoreError, match="--expected-size"):
        run(pipe, bytes(31), chunk=1)
    pipe.cancel()
    assert max(sent) <= 3


def test_ordered_reader_delivers_in_order_despite_out_of_order_fetches():
    def fetch(i):
        time.sleep((5 - i % 5) / 1000)  # later items finish first
        return bytes([i]) * 1000

    with OrderedReader(range(20), fetch, jobs=4) as r:
        got = r.read()
    assert got == b"".join(bytes([i]) * 1000 for i in range(20))


def test_ordered_reader_raises_a_fetch_error_at_its_position():
    def fetch(i):
        if i == 3:
            raise StoreError("item 3 is bad")
        return b"ok"

    r = OrderedReader(range(6), fetch, jobs=2)
    assert r.read(2) == b"ok" and r.read(10) == b"okok"  # good bytes first, then the error
    with pytest.raises(StoreError, match="item 3"):
        r.read(2)
    r.close()


def test_ordered_reader_deliver_hook_sees_the_last_item_before_its_bytes_go_out():
    seen = []

    def deliver(item, data, last):
        seen.append((item, last))
        if last:
            raise StoreError("whole check failed")

    r = OrderedReader(range(3), lambda i: b"a", jobs=2, deliver=deliver)
    assert r.read(1) + r.read(1) == b"aa"
    with pytest.raises(StoreError):
        r.read(1)
    assert seen == [(0, False), (1, False), (2, True)]


def test_retry_call_retries_transient_failures_only():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("drop")
        return "done"

    transient = lambda e: isinstance(e, ConnectionError)  # noqa: E731
    assert retry_call(flaky, transient=transient, sleep=lambda s: None) == "done"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ValueError):
        retry_call(lambda: calls.append(1) or (_ for _ in ()).throw(ValueError("no")),
                   transient=transient, sleep=lambda s: None)
    assert len(calls) == 1


def test_memory_help_is_available_for_cli_help():
    from zfsglacier.plumbing.parts import MEMORY_HELP
    from zfsglacier.cli.upload import UPLOAD_HELP
    assert "(JOBS + 1) x part size" in MEMORY_HELP and MEMORY_HELP in UPLOAD_HELP
