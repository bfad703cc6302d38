"""``trainer.pool``: results in order, errors and dead workers reported, cancel stops the workers."""
from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from trainer.errors import Cancelled, PriorPathError
from trainer.jobs import CancelToken
from trainer.pool import ordered_map, parse_workers, resolve_workers


class Square:
    """A picklable job; ``bad`` items raise, ``die`` kills the worker, the rest sleep a little at random."""

    def __init__(self, bad=(), die=(), error=PriorPathError):
        self.bad, self.die, self.error, self.where = set(bad), set(die), error, "parent"

    def start(self, device):
        self.where = "worker"

    def __call__(self, i):
        if i in self.die:
            os._exit(9)
        if i in self.bad:
            raise self.error(f"item {i} is bad")
        time.sleep((i * 7 % 5) / 200)  # later items often finish first: order must still hold
        return i * i, self.where, os.getpid()


def test_results_come_back_in_order_from_several_processes():
    out = list(ordered_map(Square(), iter(range(20)), workers=2))
    assert [r[0] for r in out] == [i * i for i in range(20)]
    assert {r[1] for r in out} == {"worker"}
    assert os.getpid() not in {r[2] for r in out}
    assert not multiprocessing.active_children()


def test_one_worker_runs_in_this_process():
    out = list(ordered_map(Square(), range(3), workers=1))
    assert [r[1:] for r in out] == [("parent", os.getpid())] * 3


def test_items_are_read_lazily_with_a_bounded_window():
    taken = []

    def items():
        for i in range(1000):
            taken.append(i)
            yield i

    results = ordered_map(Square(), items(), workers=2)
    assert next(results)[0] == 0
    assert len(taken) <= 2 * 2 + 1  # the window, not the whole range
    results.close()
    assert not multiprocessing.active_children()


def test_a_worker_error_is_raised_with_its_text():
    with pytest.raises(PriorPathError, match="^item 5 is bad$"):
        list(ordered_map(Square(bad={5}), range(10), workers=2))
    with pytest.raises(RuntimeError, match="ValueError: item 2 is bad"):
        list(ordered_map(Square(bad={2}, error=ValueError), range(10), workers=2))
    assert not multiprocessing.active_children()


def test_a_dead_worker_is_reported():
    with pytest.raises(PriorPathError, match="worker process stopped unexpectedly with exit code 9"):
        list(ordered_map(Square(die={3}), range(10), workers=2))
    assert not multiprocessing.active_children()


def test_cancel_stops_the_workers_promptly():
    token = CancelToken()
    seen = []
    start = time.monotonic()
    with pytest.raises(Cancelled):
        for r in ordered_map(Square(), range(10_000), workers=2, cancel=token):
            seen.append(r)
            if len(seen) == 3:
                token.cancel()
                cancelled_at = time.monotonic()
    assert len(seen) == 3 and time.monotonic() - cancelled_at < 5, time.monotonic() - start
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("text, expected", [("auto", "auto"), ("3", 3), (" 1 ", 1)])
def test_parse_workers(text, expected):
    assert parse_workers(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "two", ""])
def test_parse_workers_refuses(text):
    with pytest.raises(PriorPathError, match="--workers must be a positive integer or 'auto'"):
        parse_workers(text)


def test_auto_is_one_per_core_on_the_cpu_and_in_process_on_one_gpu():
    assert 1 <= resolve_workers("auto", "cpu") <= len(os.sched_getaffinity(0))
    assert resolve_workers("auto", "cpu", items=15) == 1  # too few items to pay for starting a worker
    assert resolve_workers("auto", "mps") == 1
    assert resolve_workers(5, "cpu") == 5 and resolve_workers(5, "cpu", items=2) == 2
    assert resolve_workers(5, "cpu", items=0) == 1


def test_bulk_jobs_count_cpu_cores_when_no_model_needs_the_gpu(engine_models):
    """On a GPU machine the example-based defaults still run on the CPU: workers go by cores, not by GPUs."""
    import torch

    from trainer.inference import Engine

    example_based = Engine(device="cpu")  # the shipped defaults: analogy and quilt
    example_based.device = torch.device("cuda", 0)  # as if on a GPU machine (the models never move there)
    assert example_based.compute_device == "cpu"
    neural = Engine(None, engine_models["pix2pixhd"], device="cpu")
    neural.device = torch.device("cuda", 0)
    assert neural.compute_device == "cuda:0"
