"""The job runner: results on the GUI thread, errors as messages, superseded previews, deleted owners."""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject

from priorpath_desktop.workers import Job, LatestOnly, describe_error
from trainer.errors import PriorPathError

WAIT = 20000


def test_a_job_reports_progress_and_its_result_on_the_gui_thread(qtbot):
    gui = threading.get_ident()
    seen = []

    def work(progress, cancel):
        for i in range(3):
            progress(i + 1, 3, "step")
        return threading.get_ident()

    job = Job(work)
    job.progress.connect(lambda d, t, m: seen.append((d, threading.get_ident() == gui)))
    with qtbot.waitSignal(job.finished, timeout=WAIT) as blocker:
        job.start()
    assert blocker.args[0] != gui  # the work ran elsewhere
    assert seen == [(1, True), (2, True), (3, True)]


def test_errors_become_messages_and_cancel_is_its_own_ending(qtbot):
    def bad(progress, cancel):
        raise PriorPathError("mask.png: not a binary mask")

    job = Job(bad)
    with qtbot.waitSignal(job.failed, timeout=WAIT) as blocker:
        job.start()
    assert blocker.args == ["mask.png: not a binary mask"]

    def crash(progress, cancel):
        raise ValueError("boom")

    job = Job(crash)
    with qtbot.waitSignal(job.failed, timeout=WAIT) as blocker:
        job.start()
    assert blocker.args == ["ValueError: boom"]

    gate = threading.Event()

    def slow(progress, cancel):
        gate.wait(WAIT / 1000)
        cancel.raise_if_cancelled()
        return 1

    job = Job(slow)
    with qtbot.waitSignal(job.cancelled, timeout=WAIT):
        job.start()
        job.cancel()
        gate.set()
    assert describe_error(OSError(28, "No space left on device", "out.png")) == "No space left on device: out.png"


def test_latest_only_delivers_only_the_newest_request(qtbot):
    gate = threading.Event()
    lo = LatestOnly()
    delivered = []
    lo.finished.connect(delivered.append)

    def make(k):
        def work(progress, cancel):
            if k == 0:
                gate.wait(WAIT / 1000)  # the first is still running while the others arrive
            cancel.raise_if_cancelled()
            return k
        return work

    for k in range(5):
        lo.submit(make(k))
    gate.set()
    qtbot.waitUntil(lambda: lo.idle, timeout=WAIT)
    assert delivered == [4] and lo.submitted == 5 and lo.delivered == 1


def test_a_job_whose_owner_was_deleted_ends_quietly(qtbot):
    owner = QObject()
    gate, ended = threading.Event(), threading.Event()

    def work(progress, cancel):
        gate.wait(WAIT / 1000)
        try:
            progress(1, 1, "late")
            return 1
        finally:
            ended.set()

    job = Job(work, "orphan", owner)
    job.start()
    owner.deleteLater()
    qtbot.waitUntil(lambda: not _alive(job), timeout=WAIT)
    gate.set()
    assert ended.wait(WAIT / 1000)
    qtbot.waitUntil(lambda: job.done, timeout=WAIT)
    assert job.token.cancelled  # progress had nowhere to go: the work was told to stop


def _alive(obj) -> bool:
    import shiboken6
    return shiboken6.isValid(obj)
