"""The worker-wide Snakemake run slots (emotf/session/slots.py, issue 13 item 1): limit, cores per
run, round robin between sessions, stale requests. Pure bookkeeping: no process is run."""

from __future__ import annotations

import gc
import time

import pytest

from emotf.session.slots import RunSlots, shared_slots, worker_slots


def test_a_session_alone_gets_every_slot_and_no_more() -> None:
    slots = RunSlots(limit=3, cores=12)
    assert [slots.acquire("a") for _ in range(4)] == [True, True, True, False]
    assert slots.in_use() == 3 and slots.cores_per_run == 4


def test_a_freed_slot_goes_to_the_session_holding_fewer_not_to_the_backlog() -> None:
    slots = RunSlots(limit=2, cores=2)
    assert slots.acquire("backlog") and slots.acquire("backlog")
    assert not slots.acquire("fresh")  # every slot busy: fresh queues
    slots.release("backlog")
    assert not slots.acquire("backlog")  # the backlog asks first, but it is fresh's turn
    assert slots.acquire("fresh")
    slots.release("backlog")
    assert slots.acquire("backlog")  # nobody else waits: the backlog gets it back


def test_ties_go_to_the_session_that_waited_longest() -> None:
    slots = RunSlots(limit=1, cores=1)
    assert slots.acquire("a")
    assert not slots.acquire("b")
    assert not slots.acquire("c")
    slots.release("a")
    assert not slots.acquire("c") and not slots.acquire("a")  # b asked first
    assert slots.acquire("b")
    slots.release("b")
    assert slots.acquire("c")  # then c (waiting since before a asked again)


def test_withdrawn_and_stale_requests_do_not_block_a_slot() -> None:
    slots = RunSlots(limit=1, cores=1, stale_after=0.05)
    assert slots.acquire("x")
    assert not slots.acquire("waiting")
    assert not slots.acquire("dead")
    slots.withdraw("waiting")  # nothing to run any more
    time.sleep(0.1)  # let the request of "dead" (never renewed) grow older than stale_after
    slots.release("x")
    assert slots.acquire("x")  # neither the withdrawn nor the stale request held it back


def test_close_returns_what_a_session_held_and_release_checks_ownership() -> None:
    slots = RunSlots(limit=2, cores=4)
    assert slots.acquire("a") and slots.acquire("a")
    slots.close("a")
    assert slots.in_use() == 0
    with pytest.raises(RuntimeError, match="does not hold"):
        slots.release("a")
    with pytest.raises(ValueError):
        RunSlots(limit=0, cores=1)


def test_cores_per_run_never_below_one() -> None:
    assert RunSlots(limit=4, cores=2).cores_per_run == 1
    assert RunSlots(limit=4, cores=64).cores_per_run == 16


class Owner:
    """Stands for a Worker (any object that can be weakly referenced)."""


def test_one_pool_per_worker_from_its_settings() -> None:
    first, second = Owner(), Owner()
    pool = worker_slots(first, {"worker_runs": 3, "cores": 9})
    assert (pool.limit, pool.cores_per_run) == (3, 3)
    assert worker_slots(first, {"worker_runs": 5}) is pool  # made once, at the first call
    other = shared_slots(second, 1, 1)
    assert other is not pool
    del first
    gc.collect()
    assert shared_slots(Owner(), 2, 2).limit == 2  # a new worker gets its own pool
