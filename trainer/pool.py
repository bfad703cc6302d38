"""Bulk generation in worker processes: a job mapped over items, results handed back in item order.

``ordered_map(job, items, workers, cancel)`` runs ``job(item)`` for each item and yields the results in the
order of ``items``. With one worker it runs in this process (today's path, on the caller's engine). With
more, it starts ``workers`` processes with the "spawn" method (forking a process whose torch already runs
threads can deadlock the child), each calling ``job.start(device)`` once (building its own engine from a
picklable description) and then taking items from a queue.

- Memory stays flat in the number of items: ``items`` is read lazily and at most ``2 x workers`` items are
  in flight or waiting to be handed back in order.
- Each worker runs ``cores // workers`` torch (and OpenCV) threads, so the processes do not oversubscribe.
- Cancelling (``CancelToken``), an error, or the caller leaving the loop terminates the workers at once;
  an exception raised in a worker is raised again here, a ``PriorPathError`` with the same text.
- On a GPU, ``workers="auto"`` is one worker per GPU (one GPU: in this process), worker k on ``cuda:k``;
  an explicit ``--workers N`` on CUDA spreads N workers over the GPUs the same way.

Spawned workers import the caller's main module again: a script that asks for more than one worker needs
the usual ``if __name__ == "__main__":`` guard (the CLI, the app's bundle and the benchmarks have it).
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import traceback
from typing import Any, Iterable, Iterator, Optional, Protocol, Union

from .errors import PriorPathError
from .jobs import CancelToken, check

AUTO_MAX_WORKERS = 32  # past this, per-process overheads (models in each, queue traffic) outweigh the gain
AUTO_MEMORY_SHARE = 0.5  # auto leaves half the available memory to everything else
AUTO_ITEMS_PER_WORKER = 16  # a worker takes seconds to start (torch, the models' indexes): not for a few items
POLL_S = 0.1  # how often a waiting parent checks for cancellation and dead workers


class Job(Protocol):
    def start(self, device: Optional[str]) -> None:
        """In a worker, before its first item: build what ``__call__`` needs (the engine)."""

    def __call__(self, item: Any) -> Any:
        """One item's result; it must pickle (encoded PNG bytes, not arrays, keep the traffic small)."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; a Slurm job's share, not the whole node)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def parse_workers(text: Union[str, int]) -> Union[str, int]:
    """``--workers``: "auto" or a positive integer."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise PriorPathError(f"--workers must be a positive integer or 'auto', got '{text}'")
    return value


def resolve_workers(workers: Union[str, int], device_type: str, items: Optional[int] = None) -> int:
    """How many processes ``workers`` means for ``items`` items here (1 = in this process).

    ``auto``: on the CPU, one per usable core, at most ``AUTO_MAX_WORKERS``, no more than half the available
    memory holds at this process's size (it holds the engine a worker will load), and one per
    ``AUTO_ITEMS_PER_WORKER`` items; on CUDA one per GPU; on Apple's MPS one (one GPU shared by all)."""
    workers = parse_workers(workers)
    if workers == "auto":
        workers = _auto_workers(device_type)
        if items is not None:
            workers = min(workers, items // AUTO_ITEMS_PER_WORKER)
    return max(1, min(workers, items) if items is not None else workers)


def _auto_workers(device_type: str) -> int:
    if device_type == "cuda":
        import torch

        return max(1, torch.cuda.device_count())
    if device_type != "cpu":
        return 1
    n = min(usable_cores(), AUTO_MAX_WORKERS)
    available, per_worker_bytes = _available_memory(), _resident_memory()
    if per_worker_bytes and available:
        n = min(n, int(available * AUTO_MEMORY_SHARE // per_worker_bytes))
    return max(1, n)


def worker_devices(device: str, workers: int) -> list[Optional[str]]:
    """The device each worker builds its engine on: GPUs dealt out in turn; "cpu" when asked (a GPU engine whose
    models all run on the CPU); otherwise the parent's."""
    if device == "cpu":
        return ["cpu"] * workers
    if not device.startswith("cuda"):
        return [None] * workers
    import torch

    count = max(1, torch.cuda.device_count())
    return [f"cuda:{k % count}" for k in range(workers)]


def ordered_map(job: Job, items: Iterable[Any], workers: int, cancel: Optional[CancelToken] = None,
                devices: Optional[list[Optional[str]]] = None) -> Iterator[Any]:
    """``job(item)`` for each item, in order; see the module docstring. Close the generator (or let it
    finish) to stop the workers; ``contextlib.closing`` does that when the caller's loop raises."""
    if workers <= 1:
        for item in items:
            check(cancel)
            yield job(item)
        return
    yield from _in_processes(job, iter(items), workers, cancel, devices or [None] * workers)


def _in_processes(job: Job, items: Iterator[Any], workers: int, cancel: Optional[CancelToken],
                  devices: list[Optional[str]]) -> Iterator[Any]:
    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    threads = max(1, usable_cores() // workers)
    procs = [ctx.Process(target=_worker_main, args=(job, devices[k], threads, tasks, results), daemon=True,
                         name=f"priorpath-worker-{k}") for k in range(workers)]
    try:
        for p in procs:
            p.start()
        window = 2 * workers  # items in flight or finished but waiting for an earlier one
        sent = handed = 0
        ready: dict[int, Any] = {}
        exhausted = False
        while True:
            check(cancel)
            while not exhausted and sent - handed < window:
                item = next(items, _END)
                if item is _END:
                    exhausted = True
                else:
                    tasks.put((sent, item))
                    sent += 1
            if exhausted and handed == sent:
                break
            while handed not in ready:
                index, ok, payload = _next_result(results, procs, cancel)
                if not ok:
                    raise payload
                ready[index] = payload
            yield ready.pop(handed)
            handed += 1
        for _ in procs:
            tasks.put(None)  # each worker leaves its loop on one of these
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:  # cancelled, failed, or the caller stopped early: no worker outlives the run
            if p.is_alive():
                p.terminate()
        for p in procs:
            if p.pid is not None:
                p.join(timeout=10)
        for q in (tasks, results):
            q.cancel_join_thread()  # never block on a pipe a terminated worker no longer reads
            q.close()


_END = object()


def _next_result(results, procs, cancel: Optional[CancelToken]) -> tuple[Optional[int], bool, Any]:
    """The next (index, ok, result or exception) a worker sent; an error if a worker died without one."""
    while True:
        check(cancel)
        try:
            return results.get(timeout=POLL_S)
        except queue.Empty:
            pass
        dead = [p for p in procs if p.exitcode is not None]
        if not dead:
            continue
        try:  # a worker that failed sent its exception before it exited
            return results.get(timeout=1.0)
        except queue.Empty:
            code = dead[0].exitcode
            hint = " (killed: out of memory?)" if code in (-9, 137) else ""
            raise PriorPathError(f"a worker process stopped unexpectedly with exit code {code}{hint}; "
                                 f"rerun the same command to continue, or use fewer --workers") from None


def _worker_main(job: Job, device: Optional[str], threads: int, tasks, results) -> None:
    import signal

    import cv2
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    parent = multiprocessing.parent_process()
    try:
        job.start(device)
    except BaseException as exc:  # e.g. a model file changed on disk: report it, do not hang the parent
        results.put((None, False, _portable(exc)))
        return
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            task = _END
        if parent is not None and not parent.is_alive():
            os._exit(1)  # the parent was killed (kill -9): nobody reads our results, leave no orphan
        if task is _END:
            continue
        if task is None:
            return
        index, item = task
        try:
            results.put((index, True, job(item)))
        except BaseException as exc:
            results.put((index, False, _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles and is ours; otherwise an error that carries its type, text and traceback."""
    if isinstance(exc, PriorPathError):
        try:
            pickle.dumps(exc)
            return exc
        except Exception:
            return PriorPathError(str(exc))
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    return RuntimeError(f"in a worker process: {type(exc).__name__}: {exc}\n{text}")


def _available_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable), or 0 when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _resident_memory() -> int:
    """Bytes this process holds in memory now (Linux), or 0 when unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0
