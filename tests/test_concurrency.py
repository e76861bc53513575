"""The one concurrency module: its rules (order, bounds, where errors surface, stopping), and that
no other module makes threads of its own."""

import ast
import threading
import time

import pytest

from tests.helpers import REPO
from zfsglacier.plumbing.concurrency import END, BoundedPool, OrderedMap, Sink, Source, parallel_map


def test_ordered_map_hands_out_in_order_within_its_depth():
    running, peak, lock = [0], [0], threading.Lock()

    def work(n):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.001 * (7 - n % 7))  # later items finish first
        with lock:
            running[0] -= 1
        return n * n

    out = []
    with OrderedMap(work, 3, depth=5) as m:
        for n in range(40):
            while m.full:
                out.append(m.next())
            m.submit(n, tag=f"t{n}")
            assert len(m) <= 5
        while len(m):
            out.append(m.next())
    assert out == [(f"t{n}", n * n) for n in range(40)] and peak[0] <= 3
    assert parallel_map(lambda n: -n, range(10), 4) == [-n for n in range(10)]


def test_an_ordered_map_raises_an_error_at_its_turn_after_the_good_results():
    def work(n):
        if n == 2:
            raise ValueError("item 2")
        return n

    m = OrderedMap(work, 2, depth=4)
    for n in range(4):
        m.submit(n)
    assert m.next() == (None, 0) and m.next() == (None, 1)
    while m.first_error() is None:
        time.sleep(0.001)
    with pytest.raises(ValueError, match="item 2"):
        m.next()
    assert m.next() == (None, 3)
    m.close()


def test_closing_an_ordered_map_cancels_what_has_not_started():
    started, gate = [], threading.Event()

    def work(n):
        started.append(n)
        gate.wait(5)

    m = OrderedMap(work, 1, depth=10)
    for n in range(10):
        m.submit(n)
    while not started:
        time.sleep(0.001)
    closing = threading.Thread(target=m.close)
    closing.start()  # cancels 1..9 at once, then waits for 0, which waits for the gate
    time.sleep(0.05)
    gate.set()
    closing.join(5)
    assert started == [0]


def test_a_bounded_pool_runs_at_most_its_workers_and_skips_the_rest_after_a_failure():
    done, lock = [], threading.Lock()

    def work(n):
        if n == 5:
            raise RuntimeError("part 5")
        time.sleep(0.002)
        with lock:
            done.append(n)

    pool = BoundedPool(work, 3)
    with pytest.raises(RuntimeError, match="part 5"):
        for n in range(100):
            pool.submit(n)
    with pytest.raises(RuntimeError, match="part 5"):
        pool.join()
    assert pool.in_flight_peak <= 3 and len(done) < 20 and 5 not in done


def test_a_source_hands_on_everything_before_its_error_then_the_error():
    def run(emit):
        for n in range(5):
            emit(n)
        raise OSError("read failed")

    s = Source(run, depth=2)
    assert [s.get() for _ in range(5)] == list(range(5))
    with pytest.raises(OSError, match="read failed"):
        s.get()
    assert s.get() is END


def test_a_closed_source_stops_its_thread_at_the_next_emit():
    emitted = []

    def run(emit):
        for n in range(10 ** 6):
            emit(n)
            emitted.append(n)

    s = Source(run, depth=2)
    assert s.get() == 0
    s.close()
    time.sleep(0.5)  # the thread notices within 0.2 s
    count = len(emitted)
    time.sleep(0.3)
    assert len(emitted) == count < 10, "the thread went on emitting after close"


def test_a_sink_writes_nothing_after_a_failed_item():
    written = []

    def consume(item):
        if item == 3:
            raise BrokenPipeError("closed")
        written.append(item)

    sink = Sink(consume, depth=2)
    with pytest.raises(BrokenPipeError):
        for n in range(100):
            sink.put(n)
            time.sleep(0.001)
    with pytest.raises(BrokenPipeError):
        sink.finish()
    assert written == [0, 1, 2]


THREAD_MAKERS = {("threading", "Thread"), ("concurrent.futures", "ThreadPoolExecutor"), ("queue", "Queue")}


def test_no_module_but_concurrency_makes_threads():
    bad = []
    for path in sorted((REPO / "zfsglacier").rglob("*.py")):
        if path.name == "concurrency.py" or "build" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    (node.value.id, node.attr) in {("threading", "Thread"), ("queue", "Queue")}:
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and any((node.module, a.name) in THREAD_MAKERS for a in node.names):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}")
    assert not bad, bad
