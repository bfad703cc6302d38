"""The batch export dialog on small real checkpoints: a run, cancel and resume, refused settings, bad input."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from priorpath_desktop.export_dialog import (NEED_OUT, NEED_SKETCHES, START_TIP, EtaEstimator, ExportDialog,
                                             ExportSettings, format_duration, sketch_store)
from priorpath_desktop.messages import open_messages
from trainer.inference import Engine

REPO = Path(__file__).resolve().parents[2]
SKETCHES = REPO / "resources" / "sample" / "sketches"
WAIT = 30000  # ms; generous for a busy 2-core machine, never reached when things work


@pytest.fixture(scope="module")
def engine(engine_models) -> Engine:
    return Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu")


@pytest.fixture
def sketches(tmp_path) -> Path:
    folder = tmp_path / "sketches"
    folder.mkdir()
    for name in ("sketch_01.png", "sketch_02.png"):
        shutil.copy(SKETCHES / name, folder / name)
    return folder


@pytest.fixture
def make_dialog(qtbot, engine):
    def make(current=None, provider=None) -> ExportDialog:
        dialog = ExportDialog(provider or (lambda: engine), current)
        qtbot.addWidget(dialog)
        dialog.show()
        return dialog

    yield make
    for box in open_messages():
        box.close()


def rows(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.png"))


def run(qtbot, dialog: ExportDialog):
    with qtbot.waitSignal(dialog.exportFinished, timeout=WAIT) as blocker:
        dialog.start()
    return blocker.args[0]


def test_exports_the_asked_number_of_samples(qtbot, make_dialog, sketches, tmp_path):
    dialog = make_dialog()
    out = tmp_path / "out"
    dialog.apply_settings({"sources": [str(sketches)], "count": 4, "seed": 1, "out": str(out)})
    assert dialog.height_spin.value() == 64 and dialog.width_spin.value() == 128  # the model's size, shown
    result = run(qtbot, dialog)
    assert (result.count, result.generated) == (4, 4)
    expected = [f"syn_{i:06d}" for i in range(4)]
    assert [r["stem"] for r in rows(out)] == expected
    assert {Path(r["source"]).name for r in rows(out)} <= {"sketch_01.png", "sketch_02.png"}
    for kind in ("coarse", "fine", "rgb"):
        assert stems(out / kind) == expected
    assert dialog.progress_bar.value() == 4 and dialog.open_button.isEnabled()
    assert str(out) in dialog.status_label.text() and not dialog.is_running()


def test_cancel_then_start_again_completes_without_duplicates(qtbot, make_dialog, sketches, tmp_path):
    dialog = make_dialog()
    out = tmp_path / "out"
    dialog.apply_settings({"sources": [str(sketches)], "count": 4, "out": str(out)})

    def cancel_after_first_sample(job):
        # a direct connection runs in the worker, before it starts the next sample: a deterministic stop
        job.progress.connect(lambda done, total, message: job.cancel() if done >= 1 else None,
                             Qt.ConnectionType.DirectConnection)

    dialog.exportStarted.connect(cancel_after_first_sample)
    with qtbot.waitSignal(dialog.exportCancelled, timeout=WAIT) as blocker:
        dialog.start()
    assert blocker.args == [1]
    assert [r["stem"] for r in rows(out)] == ["syn_000000"]
    assert "press Start to continue" in dialog.status_label.text()
    assert dialog.open_button.isEnabled()  # what the stopped run made can be looked at

    dialog.exportStarted.disconnect(cancel_after_first_sample)
    statuses = []
    dialog.statusMessage.connect(statuses.append)
    result = run(qtbot, dialog)
    assert (result.count, result.generated) == (4, 3)
    assert any(s.startswith("resuming: 1 of 4 already present") for s in statuses)
    expected = [f"syn_{i:06d}" for i in range(4)]
    assert [r["stem"] for r in rows(out)] == expected
    for kind in ("coarse", "fine", "rgb"):
        assert stems(out / kind) == expected


def test_other_settings_on_an_export_folder_are_refused(qtbot, make_dialog, sketches, tmp_path):
    dialog = make_dialog()
    out = tmp_path / "out"
    dialog.apply_settings({"sources": [str(sketches)], "count": 2, "seed": 0, "out": str(out)})
    run(qtbot, dialog)
    dialog.seed_spin.setValue(5)
    with qtbot.waitSignal(dialog.exportFailed, timeout=WAIT) as blocker:
        dialog.start()
    assert "other seed" in blocker.args[0]
    messages = open_messages()
    assert len(messages) == 1 and "other seed" in messages[0].text()
    assert dialog.isVisible() and dialog.start_button.isEnabled()
    assert len(rows(out)) == 2


def test_no_sketches_or_no_engine_is_an_error_message(qtbot, make_dialog, sketches, tmp_path):
    dialog = make_dialog()
    dialog.apply_settings({"count": 2, "out": str(tmp_path / "out")})
    assert not dialog.start_button.isEnabled()
    with qtbot.waitSignal(dialog.exportFailed, timeout=WAIT) as blocker:
        dialog.start()  # from code, despite the disabled button: refused with the reason
    assert NEED_SKETCHES in blocker.args[0] and not dialog.is_running()
    for box in open_messages():
        box.close()
    loading = make_dialog(provider=lambda: None)
    loading.apply_settings({"sources": [str(sketches)], "count": 2, "out": str(tmp_path / "out")})
    assert loading.start() is None
    assert "not loaded yet" in open_messages()[0].text()


def test_the_current_sketch_is_stored_by_content_and_exported(qtbot, make_dialog, tmp_path):
    mask = np.zeros((64, 128), np.uint8)
    mask[8:56, 10:90] = 255
    dialog = make_dialog(current=lambda: mask)
    out = tmp_path / "out"
    dialog.apply_settings({"include_current": True, "count": 2, "augment": False, "out": str(out)})
    result = run(qtbot, dialog)
    assert result.count == 2
    stored = list(sketch_store().glob("*.png"))
    assert len(stored) == 1 and {r["source"] for r in rows(out)} == {str(stored[0].resolve())}
    mask[:] = 0  # an empty canvas cannot be exported
    with qtbot.waitSignal(dialog.exportFailed, timeout=WAIT) as blocker:
        dialog.start()
    assert "has no tissue" in blocker.args[0]


def test_settings_round_trip_and_bad_values_fall_back(make_dialog, tmp_path):
    dialog = make_dialog(current=lambda: None)
    wanted = {"sources": ["/a", "/b"], "include_current": True, "count": 7, "augment": False, "seed": 9,
              "size": [96, 200], "out": str(tmp_path)}
    dialog.apply_settings(wanted)
    assert dialog.settings() == wanted
    dialog.apply_settings({"count": -3, "seed": "x", "size": [5, 5], "sources": "nope"})
    assert dialog.settings() == ExportSettings().to_dict()


def test_eta_counts_only_this_runs_samples():
    now = [0.0]
    eta = EtaEstimator(clock=lambda: now[0])
    eta.update(30, 100)  # a resume: 30 were there before this run
    assert eta.seconds_left() is None
    now[0] = 10.0
    eta.update(35, 100)  # 5 made in 10 s
    assert eta.seconds_left() == pytest.approx(130.0)
    assert [format_duration(s) for s in (4.4, 130, 7500)] == ["4 s", "2 min 10 s", "2 h 05 min"]


def test_start_is_disabled_until_there_are_sketches_and_an_output_folder(make_dialog, sketches, tmp_path):
    dialog = make_dialog()
    assert not dialog.start_button.isEnabled()
    tip = dialog.start_button.toolTip()
    assert NEED_SKETCHES in tip and NEED_OUT in tip
    dialog.add_sources([str(sketches)])
    assert not dialog.start_button.isEnabled()
    assert NEED_OUT in dialog.start_button.toolTip() and NEED_SKETCHES not in dialog.start_button.toolTip()
    dialog.out_edit.setText(str(tmp_path / "out"))
    assert dialog.start_button.isEnabled() and dialog.start_button.toolTip() == START_TIP
    dialog.sources_list.setCurrentRow(0)
    dialog.remove_button.click()
    assert not dialog.start_button.isEnabled() and NEED_SKETCHES in dialog.start_button.toolTip()
    dialog.out_edit.clear()
    assert not dialog.start_button.isEnabled()


def test_a_sketch_with_tissue_is_included_by_default(make_dialog, sketches, tmp_path):
    mask = np.zeros((64, 128), np.uint8)
    mask[8:56, 10:90] = 255
    dialog = make_dialog(current=lambda: mask)
    assert dialog.include_current.isChecked()
    dialog.out_edit.setText(str(tmp_path / "out"))
    assert dialog.start_button.isEnabled()  # the current sketch is a source
    dialog.include_current.setChecked(False)
    assert not dialog.start_button.isEnabled() and "include the current sketch" in dialog.start_button.toolTip()

    # stored settings: an explicit "leave it out" with other sketches is kept ...
    dialog.apply_settings({"sources": [str(sketches)], "include_current": False, "out": str(tmp_path)})
    assert not dialog.include_current.isChecked()
    # ... but with nothing else to export, the sketch on the canvas is taken
    dialog.apply_settings({"include_current": False, "out": str(tmp_path)})
    assert dialog.include_current.isChecked()

    empty = make_dialog(current=lambda: np.zeros((64, 128), np.uint8))
    assert not empty.include_current.isChecked()


def test_a_cancel_during_the_last_sample_still_says_the_export_is_done(qtbot, make_dialog, sketches, tmp_path):
    dialog = make_dialog()
    out = tmp_path / "out"
    dialog.apply_settings({"sources": [str(sketches)], "count": 3, "out": str(out)})
    # Cancel pressed while the last sample is written: the export is complete all the same
    dialog.exportStarted.connect(lambda job: job.progress.connect(
        lambda done, total, message: job.cancel() if total and done >= total else None,
        Qt.ConnectionType.DirectConnection))
    dialog.start()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=WAIT)
    assert len(rows(out)) == 3
    status = dialog.status_label.text()
    assert status.startswith("done:") and "3 samples" in status and "press Start" not in status, status
    assert dialog.open_button.isEnabled()


def test_remove_takes_the_selected_rows_or_else_the_current_one(make_dialog, tmp_path):
    dialog = make_dialog()
    dialog.add_sources([str(tmp_path / name) for name in ("a", "b", "c", "d")])
    listed = dialog.sources_list
    listed.item(0).setSelected(True)
    listed.item(2).setSelected(True)
    dialog.remove_button.click()
    assert [listed.item(i).text() for i in range(listed.count())] == [str(tmp_path / "b"), str(tmp_path / "d")]

    # a row can look chosen (current, after a click that only moved the focus or the arrow keys) with no selection
    listed.clearSelection()
    listed.selectionModel().setCurrentIndex(listed.model().index(1, 0), QItemSelectionModel.SelectionFlag.NoUpdate)
    assert not listed.selectedItems() and listed.currentRow() == 1
    dialog.remove_button.click()
    assert [listed.item(i).text() for i in range(listed.count())] == [str(tmp_path / "b")]


def test_a_large_export_from_the_dialog_uses_worker_processes_and_the_same_bytes(qtbot, make_dialog, sketches,
                                                                                 tmp_path, engine, monkeypatch):
    import trainer.export as export
    from priorpath_desktop.export_dialog import run_export
    from trainer.pool import resolve_workers

    count = 40
    if resolve_workers("auto", "cpu", items=count) < 2:
        pytest.skip("one usable core: auto stays in this process")
    used = []
    real = export.ordered_map

    def recording(job, items, workers, *args, **kwargs):
        used.append(workers)
        return real(job, items, workers, *args, **kwargs)

    monkeypatch.setattr(export, "ordered_map", recording)
    dialog = make_dialog()
    dialog.apply_settings({"sources": [str(sketches)], "count": count, "seed": 3, "out": str(tmp_path / "out")})
    with qtbot.waitSignal(dialog.exportFinished, timeout=4 * WAIT) as blocker:  # workers load their models
        dialog.start()
    result = blocker.args[0]
    assert result.count == count and used == [resolve_workers("auto", "cpu", items=count)]
    alone = run_export(ExportSettings(sources=[str(sketches)], count=count, seed=3, out=str(tmp_path / "alone")),
                       engine, workers=1)
    assert alone.count == count and used[-1] == 1
    for kind in ("coarse", "fine", "rgb"):
        for name in stems(tmp_path / "alone" / kind):
            assert (tmp_path / "out" / kind / f"{name}.png").read_bytes() == \
                (tmp_path / "alone" / kind / f"{name}.png").read_bytes()
