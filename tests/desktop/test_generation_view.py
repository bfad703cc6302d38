"""The generation view on small real checkpoints: previews, supersession, seeds, variations, errors, saving."""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QTimer

from priorpath_desktop.generation_view import EMPTY_HINT, FULL_HINT, GenerationView, mask_hint, variation_seeds
from priorpath_desktop.messages import open_messages
from priorpath_desktop.preferences import Preferences

REPO = Path(__file__).resolve().parents[2]
SKETCH = REPO / "resources" / "sample" / "sketches" / "sketch_01.png"
WAIT = 30000  # ms; generous for a busy 2-core machine, never reached when things work


def sketch(h: int, w: int, shift: int = 0) -> np.ndarray:
    """The bundled sketch as a binary mask of the given size, optionally rolled sideways."""
    with Image.open(SKETCH) as im:
        mask = np.asarray(im.convert("L"))
    mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.roll(np.where(mask > 127, 255, 0).astype(np.uint8), shift, axis=1)


def close_messages() -> None:
    for box in open_messages():
        box.close()


@pytest.fixture
def view(qtbot, engine_models):
    v = GenerationView(preferences=Preferences())
    qtbot.addWidget(v)
    v.set_preview_delay(20)
    with qtbot.waitSignal(v.engineReady, timeout=WAIT):
        v.set_models(str(engine_models["analogy"]), str(engine_models["pix2pixhd"]), "cpu")
    yield v
    v.shutdown()
    qtbot.waitUntil(v.is_idle, timeout=WAIT)
    close_messages()


def preview(qtbot, view: GenerationView, mask: np.ndarray) -> dict:
    with qtbot.waitSignal(view.previewShown, timeout=WAIT):
        view.request_preview(mask)
    return view.current_results()


def test_mask_hints_and_seed_wrap():
    assert mask_hint(np.zeros((32, 32), np.uint8)) == EMPTY_HINT
    assert mask_hint(np.full((32, 32), 255, np.uint8)) == FULL_HINT
    assert mask_hint(sketch(32, 64)) is None
    assert variation_seeds(2 ** 31 - 2, 3) == [2 ** 31 - 2, 2 ** 31 - 1, 0]


def test_preview_shows_binary_fine_and_rgb_at_the_sketch_size(qtbot, view):
    mask = sketch(96, 200)
    view.set_seed(7)
    with qtbot.waitSignal(view.previewShown, timeout=WAIT) as blocker:
        view.request_preview(mask)
    assert blocker.args == [7]
    results = view.current_results()
    assert np.array_equal(results["coarse"], mask)
    assert results["fine"].shape == (96, 200) and set(np.unique(results["fine"]).tolist()) == {0, 255}
    assert results["rgb"].shape == (96, 200, 3) and results["rgb"].dtype == np.uint8
    assert view.panes["rgb"].view.image() is results["rgb"]
    assert "analogy" in view.models_label.text() and "pix2pixhd" in view.models_label.text()
    assert not open_messages()


def test_same_seed_same_fine_other_seed_other_fine(qtbot, view):
    mask = sketch(64, 128)
    view.set_seed(3)
    first = preview(qtbot, view, mask)["fine"]
    with qtbot.waitSignal(view.previewShown, timeout=WAIT, check_params_cb=lambda seed: seed == 4):
        view.set_seed(4)  # auto preview reruns on a seed change
    other = view.current_results()["fine"]
    with qtbot.waitSignal(view.previewShown, timeout=WAIT, check_params_cb=lambda seed: seed == 3):
        view.set_seed(3)
    again = view.current_results()["fine"]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_event_loop_keeps_running_during_a_preview(qtbot, view):
    """The RGB stage waits until the GUI thread has ticked five times: with a blocked GUI thread the
    ticks could never happen and the preview would never arrive."""
    ticks = []
    ticked = threading.Event()
    engine = view.engine()
    real_rgb = engine.rgb

    def gated_rgb(*args, **kwargs):
        assert ticked.wait(WAIT / 1000), "the GUI thread did not tick while the preview was running"
        return real_rgb(*args, **kwargs)

    def tick():
        if view.is_previewing():
            ticks.append(1)
            if len(ticks) >= 5:
                ticked.set()

    engine.rgb = gated_rgb
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    try:
        result = preview(qtbot, view, sketch(64, 128))
    finally:
        timer.stop()
        engine.rgb = real_rgb
    assert len(ticks) >= 5 and result["rgb"].shape == (64, 128, 3)


def test_rapid_requests_deliver_one_preview_of_the_last_sketch(qtbot, view):
    shown = []
    view.previewShown.connect(shown.append)
    masks = [sketch(64, 128, shift=8 * k) for k in range(5)]
    for mask in masks:
        view.request_preview(mask)
    qtbot.waitUntil(lambda: bool(shown), timeout=WAIT)
    qtbot.waitUntil(view.is_idle, timeout=WAIT)
    assert len(shown) == 1
    assert np.array_equal(view.current_results()["coarse"], masks[-1])


def test_a_newer_sketch_supersedes_a_running_preview(qtbot, view):
    view.set_preview_delay(0)
    shown = []
    view.previewShown.connect(shown.append)
    slow, last = sketch(160, 300), sketch(160, 300, shift=40)
    view.request_preview(slow)
    # the fine mask shows first; the RGB stage is now running and must give way
    qtbot.waitUntil(lambda: view.panes["fine"].view.image() is not None, timeout=WAIT)
    assert view.is_previewing()
    view.request_preview(last)
    qtbot.waitUntil(lambda: bool(shown), timeout=WAIT)
    qtbot.waitUntil(view.is_idle, timeout=WAIT)
    assert len(shown) == 1
    results = view.current_results()
    assert np.array_equal(results["coarse"], last) and results["rgb"].shape == (160, 300, 3)


def test_variations_fill_the_gallery_and_a_click_makes_one_current(qtbot, view):
    mask = sketch(64, 128)
    view.set_seed(10)
    preview(qtbot, view, mask)
    view.variations_spin.setValue(3)
    with qtbot.waitSignal(view.variationsReady, timeout=WAIT) as blocker:
        view.start_variations()
    assert blocker.args == [3] and view.gallery.count() == 3
    samples = view.variations()
    assert [s.seed for s in samples] == [10, 11, 12]
    assert len({s.fine.tobytes() for s in samples}) == 3  # analogy: another seed, another fine mask
    assert all(s.rgb.shape == (64, 128, 3) for s in samples)
    with qtbot.waitSignal(view.previewShown, timeout=WAIT) as chosen:
        view.gallery.itemClicked.emit(view.gallery.item(2))
    assert chosen.args == [12] and view.seed() == 12
    assert np.array_equal(view.current_results()["fine"], samples[2].fine)


def test_empty_sketch_gives_a_hint_not_an_error(qtbot, view):
    shown = []
    view.previewShown.connect(shown.append)
    view.request_preview(np.zeros((64, 128), np.uint8))
    qtbot.waitUntil(view.is_idle, timeout=WAIT)
    assert view.status_label.text() == EMPTY_HINT
    assert not shown and not open_messages() and view.current_results() == {}


def test_grey_image_gives_an_error_dialog(qtbot, view):
    grey = cv2.GaussianBlur(sketch(64, 128), (9, 9), 3)
    view.request_preview(grey)
    qtbot.waitUntil(lambda: bool(open_messages()), timeout=WAIT)
    assert "not a binary mask" in open_messages()[0].text()


@pytest.mark.parametrize("kind", ["corrupt", "foreign"])
def test_a_bad_checkpoint_shows_an_error_and_keeps_the_engine(qtbot, view, engine_models, tmp_path, kind):
    old = view.engine()
    if kind == "corrupt":
        bad = tmp_path / "broken.safetensors"
        bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + bytes(100))
        expected = "broken.safetensors"
    else:
        bad = engine_models["pix2pixhd"]  # a fine->RGB model offered as the mask model
        expected = "not a coarse mask -> fine mask model"
    with qtbot.waitSignal(view.modelsFailed, timeout=WAIT):
        view.set_models(str(bad), str(engine_models["pix2pixhd"]), "cpu")
    assert view.engine() is old
    messages = open_messages()
    assert len(messages) == 1 and expected in messages[0].text()
    close_messages()
    assert preview(qtbot, view, sketch(64, 128))["fine"].shape == (64, 128)  # the old engine still works


def test_without_an_rgb_model_the_preview_is_coarse_and_fine(qtbot, view, engine_models):
    with qtbot.waitSignal(view.engineReady, timeout=WAIT):
        view.set_models(str(engine_models["analogy"]), "none", "cpu")
    results = preview(qtbot, view, sketch(64, 128))
    assert set(results) == {"coarse", "fine"}
    assert view.engine().describe()["rgb"] == "none"


def test_save_writes_readable_pngs(qtbot, view, tmp_path):
    results = preview(qtbot, view, sketch(64, 128))
    with qtbot.waitSignal(view.saved, timeout=WAIT) as blocker:
        view.save_all(tmp_path / "out", "mine")
    assert sorted(Path(p).name for p in blocker.args[0]) == ["mine_coarse.png", "mine_fine.png", "mine_rgb.png"]
    for kind in ("coarse", "fine", "rgb"):
        with Image.open(tmp_path / "out" / f"mine_{kind}.png") as im:
            assert np.array_equal(np.asarray(im), results[kind])
    with qtbot.waitSignal(view.saved, timeout=WAIT) as blocker:
        view.save_result("fine", tmp_path / "single")
    assert blocker.args == [[str(tmp_path / "single.png")]]
    with Image.open(tmp_path / "single.png") as im:
        assert np.array_equal(np.asarray(im), results["fine"])


def test_image_view_fits_keeps_aspect_and_zooms_within_limits(qtbot):
    from priorpath_desktop.image_view import ImageView, array_to_qimage

    pane = ImageView("nothing yet")
    qtbot.addWidget(pane)
    pane.resize(400, 400)
    rgb = np.zeros((50, 100, 3), np.uint8)
    rgb[..., 0] = 200
    pane.set_image(rgb)
    rect = pane.target_rect()
    assert (rect.width(), rect.height()) == (400, 200)  # fitted, aspect kept
    assert array_to_qimage(rgb).pixelColor(3, 3).red() == 200
    assert array_to_qimage(np.full((4, 6), 77, np.uint8)).pixelColor(5, 3).red() == 77
    pane.set_zoom(100)
    assert pane.zoom() == 16 and pane.target_rect().width() == 6400
    pane.reset_zoom()
    pane.set_image(None)
    assert pane.target_rect().isEmpty() and pane.image() is None


def test_cancel_during_the_rgb_stage_leaves_captions_that_match_the_images(qtbot, view):
    """The RGB caption says "updating…" while the RGB stage runs; after Cancel it names what is still shown."""
    engine = view.engine()
    real_rgb = engine.rgb
    gates = [threading.Event()]

    def gated_rgb(*args, **kwargs):  # the RGB stage waits here until the test has pressed Cancel
        assert gates[-1].wait(WAIT / 1000)
        return real_rgb(*args, **kwargs)

    def cancel_in_rgb_stage(seed: int) -> None:
        qtbot.waitUntil(lambda: view.panes["fine"].caption.text() == f"Fine mask — seed {seed}", timeout=WAIT)
        assert view.panes["rgb"].caption.text() == "RGB — updating…"
        view.cancel()
        gates[-1].set()
        qtbot.waitUntil(view.is_idle, timeout=WAIT)
        assert view.status_label.text() == "cancelled"

    mask = sketch(64, 128)
    engine.rgb = gated_rgb
    try:
        view.set_seed(3)
        view.request_preview(mask)
        cancel_in_rgb_stage(3)
        assert view.panes["rgb"].caption.text() == "RGB — cancelled" and view.panes["rgb"].view.image() is None

        with qtbot.waitSignal(view.previewShown, timeout=WAIT):  # the gate is open: a full preview
            view.generate_now()
        shown = view.panes["rgb"].view.image()
        assert shown is not None and view.panes["rgb"].caption.text() == "RGB — seed 3"

        gates.append(threading.Event())
        view.set_seed(4)
        cancel_in_rgb_stage(4)
        assert view.panes["rgb"].caption.text() == "RGB — seed 3 · update cancelled"
        assert view.panes["rgb"].view.image() is shown
    finally:
        gates[-1].set()
        engine.rgb = real_rgb


def test_a_hint_replaces_the_panes_placeholders(qtbot, view):
    view.request_preview(np.zeros((64, 128), np.uint8))
    assert view.panes["rgb"].view.placeholder() == EMPTY_HINT == view.panes["fine"].view.placeholder()


def test_save_all_is_named_after_the_sketch_and_never_overwrites(qtbot, view, tmp_path):
    assert view.sketch_name() == "untitled"  # no file yet
    view.set_sketch_name("liver_03")
    view.set_seed(5)
    results = preview(qtbot, view, sketch(64, 128))
    with qtbot.waitSignal(view.saved, timeout=WAIT) as first:
        view.save_all(tmp_path)
    kinds = ("coarse", "fine", "rgb")
    assert sorted(Path(p).name for p in first.args[0]) == [f"liver_03_seed5_{k}.png" for k in kinds]
    before = {p: Path(p).read_bytes() for p in first.args[0]}

    view.set_sketch_name("liver_03")  # the same name again (another sketch of that name, or a second save)
    with qtbot.waitSignal(view.saved, timeout=WAIT) as second:
        view.save_all(tmp_path)
    assert sorted(Path(p).name for p in second.args[0]) == [f"liver_03_seed5-2_{k}.png" for k in kinds]
    assert all(Path(p).read_bytes() == data for p, data in before.items())  # the first set is untouched
    with Image.open(tmp_path / "liver_03_seed5-2_fine.png") as im:
        assert np.array_equal(np.asarray(im), results["fine"])


def test_gallery_thumbnails_grow_with_the_dock_and_follow_the_seed(qtbot, view):
    view.show()
    view.resize(900, 330)  # about the bottom dock's first size
    view.set_seed(20)
    preview(qtbot, view, sketch(64, 128))
    with qtbot.waitSignal(view.variationsReady, timeout=WAIT):
        view.start_variations(4)
    qtbot.waitUntil(lambda: view.gallery.isVisible() and view.gallery.width() > 200, timeout=5000)
    small = view.gallery.icon_width()
    assert small >= 120  # the old fixed strip showed 104 px thumbnails in a 260 px column
    assert view.gallery.width() >= 0.3 * view.width()  # a share of the dock, not a fixed strip
    view.resize(1800, 700)
    qtbot.waitUntil(lambda: view.gallery.icon_width() > 1.5 * small, timeout=5000)

    assert view.gallery.highlighted_seed() == 20  # the current seed's variation
    view.choose_variation(2)
    assert view.gallery.highlighted_seed() == 22
    view.auto_preview.setChecked(False)  # only the highlight is under test, not another preview
    view.set_seed(21)  # changed elsewhere: the spin box
    assert view.gallery.highlighted_seed() == 21
    view.set_seed(999)
    assert view.gallery.highlighted_seed() is None  # no variation has it: nothing stays highlighted
