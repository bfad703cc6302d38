"""Generation per class in the app (issue 17): a he3 sketch -> fine label map -> labelled H&E tile with the
shipped class models, loaded in a worker; saving label maps; the binary path untouched; export of label maps."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QTimer

from priorpath_desktop.class_export import holds_label_maps, store_label_sketch
from priorpath_desktop.class_generation import OUTLINE, generate_class_sample, load_class_engine
from priorpath_desktop.class_models import LOADING_NOTE
from priorpath_desktop.export_dialog import ExportSettings, run_export
from priorpath_desktop.generation_view import GenerationView
from priorpath_desktop.label_files import read_label_map
from priorpath_desktop.messages import open_messages
from priorpath_desktop.preferences import Preferences
from trainer.data.classes import HE3, read_class_table, read_label_png, table_from_names
from trainer.data.labels import NUCLEI, STROMA

WAIT = 60000  # ms; loading the he3 RGB library takes seconds on a busy 2-core machine
NUCLEI_IOU_BAR = 0.97  # rule(RGB) against the fine map, as tests/trainer/test_class_generation.py


def painted(size=(128, 256)) -> np.ndarray:
    """What a user paints: a band of stroma, its left half painted over with the nuclei-dense class."""
    labels = np.zeros(size, np.uint8)
    labels[20:108, :] = STROMA
    labels[20:108, 40:168] = NUCLEI
    return labels


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


@pytest.fixture(scope="module")
def he3_engine():
    return load_class_engine("cpu")


@pytest.fixture
def view(qtbot):
    v = GenerationView(preferences=Preferences())
    qtbot.addWidget(v)
    v.set_preview_delay(20)
    v.class_models.configure("cpu", None)
    yield v
    v.shutdown()
    qtbot.waitUntil(v.is_idle, timeout=WAIT)
    for box in open_messages():
        box.close()


@pytest.fixture
def loaded(view, he3_engine):
    """The view with the class models already there (their load is tested once, below)."""
    view.class_models.engine = he3_engine
    return view


def preview(qtbot, view, labels, classes=HE3) -> dict:
    with qtbot.waitSignal(view.previewShown, timeout=WAIT):
        view.request_preview(labels, classes)
    return view.current_results()


def test_a_painted_he3_sketch_gives_a_labelled_tile_whose_nuclei_sit_in_the_nuclei_class(he3_engine):
    coarse = painted()
    sample = generate_class_sample(he3_engine, coarse, 3, table=HE3)
    fine, rule = sample.fine, sample.rule
    assert fine.shape == coarse.shape and fine.dtype == np.uint8 and set(np.unique(fine)) == {0, 1, 2}
    assert sample.rgb.shape == coarse.shape + (3,) and sample.rgb.dtype == np.uint8
    # what the engine guarantees: the he3 rule reads the fine map back from the tile (air exactly)
    assert np.array_equal(rule == 0, fine == 0)
    assert iou(rule == NUCLEI, fine == NUCLEI) >= NUCLEI_IOU_BAR
    # what it does not: the fine tissue follows the sketch's outline, as the binary fine mask does, not exactly
    assert iou(fine != 0, coarse != 0) >= 0.7
    nuclei = rule == NUCLEI
    assert np.count_nonzero(nuclei & (coarse == NUCLEI)) >= 0.7 * np.count_nonzero(nuclei)
    dense, sparse = nuclei[coarse == NUCLEI].mean(), nuclei[coarse == STROMA].mean()
    assert dense > 3 * sparse, (dense, sparse)


def test_the_view_loads_the_class_models_in_a_worker_and_shows_the_label_map_and_tile(qtbot, view):
    """The first class sketch loads the he3 models (seconds) while the GUI thread keeps ticking, then its fine
    label map shows in the table's colours and the tile with a nuclei-outline toggle."""
    ticks = {"loading": 0}

    def tick():
        if view.class_models.loading:
            ticks["loading"] += 1

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    try:
        labels = painted()
        view.set_seed(3)
        with qtbot.waitSignal(view.previewShown, timeout=WAIT):
            view.request_preview(labels, HE3)
            qtbot.waitUntil(lambda: view.class_models.loading, timeout=WAIT)
            assert view.status_label.text() == LOADING_NOTE and not view.progress_bar.isHidden()
            assert view.models_label.text() == "Class models: loading…"
    finally:
        timer.stop()
    assert ticks["loading"] >= 5  # a blocked GUI thread could not have ticked while the models loaded
    # the joint path: the label map and tile come from rgb_he3 in one pass, the mask model is not named
    assert "one pass" in view.models_label.text() and "rgb_he3" in view.models_label.text()
    assert "mask_he3" not in view.models_label.text()
    results = view.current_results()
    assert np.array_equal(results["coarse"], labels) and set(np.unique(results["fine"])) == {0, 1, 2}
    fine_pane, rgb_pane = view.panes["fine"], view.panes["rgb"]
    assert fine_pane.caption.text() == "Fine label map — seed 3"
    assert np.array_equal(fine_pane.view.image(), HE3.colourise(results["fine"]))
    assert fine_pane.data is results["fine"] and fine_pane.table == HE3
    assert rgb_pane.view.image() is results["rgb"] and not rgb_pane.outlines_check.isHidden()
    rgb_pane.outlines_check.setChecked(True)
    outlined = rgb_pane.view.image()
    assert np.all(outlined[np.any(outlined != results["rgb"], axis=2)] == OUTLINE)
    assert np.count_nonzero(np.all(outlined == OUTLINE, axis=2)) > 50
    assert rgb_pane.data is results["rgb"]  # Save writes the tile, not its outlines
    assert not open_messages()


def test_the_gui_thread_keeps_running_during_a_class_preview(qtbot, loaded):
    view, ticked, ticks = loaded, threading.Event(), []
    engine = view.class_models.engine
    stage = "sketch_labels" if engine.joint_sketches else "rgb_labels"  # the slow call of this preview
    real = getattr(engine, stage)

    def gated(*args, **kwargs):
        assert ticked.wait(WAIT / 1000), "the GUI thread did not tick while the class preview was running"
        return real(*args, **kwargs)

    def tick():
        if view.is_previewing():
            ticks.append(1)
            if len(ticks) >= 5:
                ticked.set()

    setattr(engine, stage, gated)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    try:
        result = preview(qtbot, view, painted())
    finally:
        timer.stop()
        delattr(engine, stage)  # back to the method
    assert len(ticks) >= 5 and result["rgb"].shape == (128, 256, 3)


def test_save_all_and_save_write_indexed_label_maps_with_their_classes(qtbot, loaded, tmp_path):
    view = loaded
    view.set_sketch_name("nest")
    view.set_seed(4)
    results = preview(qtbot, view, painted())
    with qtbot.waitSignal(view.saved, timeout=WAIT) as blocker:
        view.save_all(tmp_path / "out")
    names = sorted(Path(p).name for p in blocker.args[0])
    assert names == ["classes.json", "nest_seed4_coarse.png", "nest_seed4_fine.png", "nest_seed4_rgb.png"]
    assert read_class_table(tmp_path / "out" / "classes.json") == HE3
    for kind in ("coarse", "fine"):
        read = read_label_map(tmp_path / "out" / f"nest_seed4_{kind}.png", 16, 20000)
        assert read.classes == HE3 and np.array_equal(read.labels, results[kind])
    with Image.open(tmp_path / "out" / "nest_seed4_rgb.png") as im:
        assert np.array_equal(np.asarray(im), results["rgb"])

    view.panes["rgb"].outlines_check.setChecked(True)
    for kind in ("fine", "rgb"):
        with qtbot.waitSignal(view.saved, timeout=WAIT) as blocker:
            view.save_result(kind, tmp_path / "single" / kind)
        assert Path(blocker.args[0][0]).name == f"{kind}.png"
    assert np.array_equal(read_label_png(tmp_path / "single" / "fine.png", HE3)[0], results["fine"])
    assert read_class_table(tmp_path / "single" / "classes.json") == HE3
    with Image.open(tmp_path / "single" / "rgb.png") as im:
        assert np.array_equal(np.asarray(im), results["rgb"])  # without the outlines shown


def test_switching_between_binary_and_class_sketches_switches_models(qtbot, loaded):
    view = loaded
    with qtbot.waitSignal(view.engineReady, timeout=WAIT):
        view.set_models(None, "none", "cpu")  # the shipped binary mask model, no RGB stage
    binary = np.where(painted() > 0, 255, 0).astype(np.uint8)
    assert set(np.unique(preview(qtbot, view, binary, None)["fine"])) == {0, 255}
    assert "mask_default" in view.models_label.text()
    assert view.panes["fine"].caption.text().startswith("Fine mask")
    results = preview(qtbot, view, painted())
    assert set(np.unique(results["fine"])) == {0, 1, 2} and "rgb_he3" in view.models_label.text()
    assert view.panes["fine"].caption.text().startswith("Fine label map")
    with qtbot.waitSignal(view.variationsReady, timeout=WAIT):
        view.start_variations(2)
    assert [s.table for s in view.variations()] == [HE3, HE3] and view.gallery.count() == 2
    results = preview(qtbot, view, binary, None)
    assert set(np.unique(results["fine"])) == {0, 255} and "mask_default" in view.models_label.text()
    assert view.gallery.count() == 0 and view.panes["rgb"].view.image() is None
    assert not open_messages()


def test_a_table_the_class_models_do_not_draw_gets_a_message_not_a_crash(qtbot, loaded):
    view = loaded
    custom = table_from_names(["tumour", "necrosis"], "lab")
    view.request_preview(painted(), custom)
    qtbot.waitUntil(lambda: "no model draws" in view.status_label.text(), timeout=WAIT)
    qtbot.waitUntil(view.is_idle, timeout=WAIT)
    for kind in ("fine", "rgb"):
        assert "tumour" in view.panes[kind].view.placeholder() and view.panes[kind].view.image() is None
    assert np.array_equal(view.panes["coarse"].view.image(), custom.colourise(painted()))
    assert view.current_results() == {} and not view.save_all_button.isEnabled() and not open_messages()
    assert preview(qtbot, view, painted())["fine"].shape == (128, 256)  # an he3 sketch still works after


def test_an_export_of_the_current_class_sketch_writes_label_maps(he3_engine, tmp_path):
    labels = painted()
    stored = store_label_sketch(labels, HE3, tmp_path / "store")
    assert read_class_table(stored.parent / "classes.json") == HE3 and holds_label_maps([stored.parent])
    assert not holds_label_maps([Path(__file__).resolve().parents[2] / "resources" / "sample" / "sketches"])
    settings = ExportSettings(include_current=True, count=2, augment=False, size=(128, 256), out=str(tmp_path / "x"))
    result = run_export(settings, None, labels, tmp_path / "store", classes=HE3, class_engine=he3_engine,
                        workers=1)
    out = result.out
    assert result.count == 2 and read_class_table(out / "classes.json") == HE3
    fine, _ = read_label_png(out / "labels" / "syn_000000.png", HE3)
    assert set(np.unique(fine)) <= {0, 1, 2} and (out / "rgb" / "syn_000000.png").is_file()
    coarse, _ = read_label_png(out / "coarse_labels" / "syn_000001.png", HE3)
    assert np.array_equal(coarse, labels)


def test_the_export_dialog_exports_a_class_sketch_on_the_class_models(qtbot, he3_engine, tmp_path):
    from priorpath_desktop.export_dialog import ExportDialog

    labels = painted()
    dialog = ExportDialog(lambda: None, lambda: labels, current_classes=lambda: HE3,
                          class_engine_provider=lambda: he3_engine)
    qtbot.addWidget(dialog)
    dialog.apply_settings({"count": 1, "augment": True, "size": [128, 256], "out": str(tmp_path / "out")})
    assert dialog.include_current.isChecked()  # the class sketch has tissue
    with qtbot.waitSignal(dialog.exportFinished, timeout=WAIT) as blocker:
        dialog.start()  # no binary engine needed for a class sketch
    out = blocker.args[0].out
    assert read_class_table(out / "classes.json") == HE3
    assert set(np.unique(read_label_png(out / "labels" / "syn_000000.png", HE3)[0])) <= {0, 1, 2}
