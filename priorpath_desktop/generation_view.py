"""The generation view: a sketch's coarse mask, the fine mask and the RGB tile side by side, live.

``request_preview(mask)`` is called after each stroke. A single-shot timer debounces the calls, then the
request goes to a ``LatestOnly`` runner, so a newer sketch supersedes (cancels) the one being generated and a
stale result never shows. The job sends the fine mask to the GUI as soon as it exists (it takes milliseconds)
and only then runs the slow RGB stage, which the engine cancels between tiles.

A sketch drawn in classes (``request_preview(labels, classes)``) goes to class-aware models instead
(``class_models``: loaded in a worker when first needed) and shows label maps in their classes' colours.
The work itself is in ``generation_work`` and ``class_generation``.
"""
from __future__ import annotations

import random
from functools import partial
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QHBoxLayout, QLabel, QMessageBox, QProgressBar, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from trainer.data.classes import BINARY, ClassTable
from trainer.inference import Engine
from trainer.jobs import CancelToken, ProgressFn

from .class_generation import (draws, generate_class_sample, nuclei_outlines, save_class_results, save_label_image,
                               unsupported_note)
from .class_models import LOADING_NOTE, ClassModels
from .folders import RESULTS, FolderMemory
from .generation_work import (EMPTY_HINT, FULL_HINT, MAX_SEED, MAX_VARIATIONS, OUTPUT_KINDS, UNTITLED,  # noqa: F401
                              Sample, free_name, generate_sample, generate_variations, load_engine, mask_hint,
                              save_image, save_results, variation_seeds, variation_thumbnail)
from .messages import show_error
from .preferences import Preferences
from .result_pane import ResultPane
from .variation_gallery import VariationGallery
from .workers import Job, LatestOnly

PANES_SHARE, GALLERY_SHARE = 3, 2  # of the dock's width, when the gallery shows


class _Relay(QObject):
    """Carries a worker's intermediate results to the GUI thread (queued), tagged with the request they answer."""

    fine = Signal(int, object)  # preview request id, (coarse, seed, fine, class table or None)
    progress = Signal(int, int, int, str)  # preview request id, done, total, message
    sample = Signal(int, int, object)  # variations run id, index, (Sample, thumbnail)


class GenerationView(QWidget):
    """Coarse, fine and RGB side by side with seed, variations and save; see the module docstring.

    The main window calls ``set_models`` once at start-up (``None, None`` for the shipped defaults),
    ``request_preview`` after every stroke and ``shutdown`` before closing.
    """

    modelsChanged = Signal(dict)  # engine.describe()
    engineReady = Signal()
    modelsFailed = Signal(str)  # the message shown; the previous engine stays
    statusMessage = Signal(str)
    previewShown = Signal(int)  # seed of a full preview (fine and, with an RGB model, RGB) now on screen
    variationsReady = Signal(int)  # how many variations the gallery holds
    saved = Signal(list)  # paths written (str)

    def __init__(self, parent: Optional[QWidget] = None, *, preferences: Optional[Preferences] = None,
                 folders: Optional[FolderMemory] = None):
        super().__init__(parent)
        prefs = preferences if preferences is not None else Preferences.load()
        self.folders = folders if folders is not None else FolderMemory(prefs)
        self._engine: Optional[Engine] = None
        self._loading: Optional[Job] = None
        self._mask: Optional[np.ndarray] = None  # the latest sketch asked for
        self._table: Optional[ClassTable] = None  # its classes when it is a label map; None for a binary mask
        self._preview_engine: Optional[Engine] = None  # the engine of the preview under way
        self.class_models = ClassModels(self)
        self.class_models.ready.connect(self._on_class_models_ready)
        self.class_models.failed.connect(self._on_class_models_failed)
        self.class_models.busy.connect(lambda _busy: self._refresh_busy())
        self._waiting_for_engine = False
        self._request_id = 0  # the preview request whose results may show; older ones are stale
        self._shown: Optional[Sample] = None  # a complete result on screen
        self._variations: list[Sample] = []
        self._gallery_mask: Optional[np.ndarray] = None
        self._variations_job: Optional[Job] = None
        self._variations_id = 0
        self._save_jobs: set[Job] = set()
        self._error_box: Optional[QMessageBox] = None
        self._name = UNTITLED

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(max(0, int(prefs.preview_delay_ms)))
        self._timer.timeout.connect(self._submit_preview)
        self._latest = LatestOnly(self)
        self._latest.finished.connect(self._on_preview_done)
        self._latest.failed.connect(self._on_preview_failed)
        self._latest.busy.connect(lambda _busy: self._refresh_busy())
        self._relay = _Relay(self)
        self._relay.fine.connect(self._on_fine)
        self._relay.progress.connect(self._on_preview_progress)
        self._relay.sample.connect(self._on_variation)

        self._build(prefs)

    def _build(self, prefs: Preferences) -> None:
        self.models_label = QLabel("Models: none loaded")
        self.models_label.setWordWrap(True)
        self.panes = {"coarse": ResultPane("Coarse sketch", "draw a sketch"),
                      "fine": ResultPane("Fine mask", "the fine mask appears here"),
                      "rgb": ResultPane("RGB", "the H&E tile appears here")}
        panes_row = QHBoxLayout()
        for kind, pane in self.panes.items():
            pane.save_button.clicked.connect(lambda _=False, kind=kind: self._ask_save(kind))
            panes_row.addWidget(pane, 1)

        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, MAX_SEED)
        self.seed_spin.setValue(min(max(0, prefs.seed), MAX_SEED))
        self.seed_spin.valueChanged.connect(self._on_seed_changed)
        self.new_seed_button = QPushButton("New seed")
        self.new_seed_button.clicked.connect(self.new_seed)
        self.variations_spin = QSpinBox()
        self.variations_spin.setRange(1, MAX_VARIATIONS)
        self.variations_spin.setValue(min(max(1, prefs.variations), MAX_VARIATIONS))
        self.variations_button = QPushButton("Variations")
        self.variations_button.clicked.connect(lambda: self.start_variations())
        self.auto_preview = QCheckBox("Auto preview")
        self.auto_preview.setChecked(True)
        self.auto_preview.toggled.connect(self._on_auto_toggled)
        self.generate_button = QPushButton("Generate")
        self.generate_button.clicked.connect(self.generate_now)
        self.save_all_button = QPushButton("Save all…")
        self.save_all_button.setEnabled(False)
        self.save_all_button.clicked.connect(self._ask_save_all)
        controls = QHBoxLayout()
        for widget in (QLabel("Seed"), self.seed_spin, self.new_seed_button, QLabel("Count"), self.variations_spin,
                       self.variations_button, self.auto_preview, self.generate_button, self.save_all_button):
            controls.addWidget(widget)
        controls.addStretch(1)

        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status_label = QLabel("")
        status_row = QHBoxLayout()
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.progress_bar)
        status_row.addWidget(self.cancel_button)

        # beside the panes, so they keep the dock's height; it takes a fixed share of the dock's width, so its
        # thumbnails grow with the dock; hidden until variations are asked for
        self.gallery = VariationGallery()
        self.gallery.setVisible(False)
        self.gallery.chosen.connect(self.choose_variation)
        results_row = QHBoxLayout()
        results_row.addLayout(panes_row, PANES_SHARE)
        results_row.addWidget(self.gallery, GALLERY_SHARE)

        layout = QVBoxLayout(self)
        layout.addWidget(self.models_label)
        layout.addLayout(results_row, 1)
        layout.addLayout(controls)
        layout.addLayout(status_row)

    # --- models -------------------------------------------------------------------------------------------------
    def engine(self) -> Optional[Engine]:
        """The engine in use; None while new models load or when none could be loaded."""
        return None if self._loading is not None else self._engine

    def engine_for(self, classes: Optional[ClassTable] = None) -> Optional[Engine]:
        """The engine for sketches of ``classes`` (None: binary masks): the user's models when they draw those
        classes, else the class models (loading them in a worker the first time); None while it loads."""
        if classes is None or draws(self.engine(), classes):
            return self.engine()
        return self.class_models.get()

    def loaded_class_engine(self) -> Optional[Engine]:
        """A loaded class-aware engine (the user's, else the class models), without starting a load."""
        engine = self.engine()
        return engine if engine is not None and engine.classes is not None else self.class_models.engine

    def _no_engine(self, table: Optional[ClassTable]) -> tuple[str, bool]:
        """Why the sketch of ``table`` has no engine now, and whether one is on its way."""
        if table is None:
            return ("models are loading…" if self._loading is not None else "no models loaded"), True
        if self.class_models.loading:
            return LOADING_NOTE, True
        if self.class_models.error is not None:
            return f"could not load the class models: {self.class_models.error}", False
        return unsupported_note(table, self.class_models.engine), False

    def set_models(self, mask_model: Optional[str], rgb_model: Optional[str], device: str = "auto",
                   style: Optional[list[str]] = None) -> Job:
        """Load an Engine off the GUI thread (None: the shipped default, "none": no model of that role).

        ``style``: real H&E images or folders the RGB stage takes its stain from (``Engine.set_style``).

        On success ``modelsChanged`` and ``engineReady`` are emitted and the current sketch is previewed again;
        on failure an error names the file and the previous engine stays in use.
        """
        if self._loading is not None:
            self._loading.cancel()  # its result, when it comes, is dropped
        self.class_models.configure(device, style)
        job = Job(lambda progress, cancel: load_engine(mask_model, rgb_model, device, style), "load models", self)
        job.finished.connect(lambda engine, job=job: self._on_engine_loaded(job, engine))
        job.failed.connect(lambda message, job=job: self._on_engine_failed(job, message))
        job.cancelled.connect(job.deleteLater)
        self._loading = job
        self.models_label.setText("Models: loading…")
        self._set_status("loading models…")
        self._refresh_busy()
        return job.start()

    def _on_engine_loaded(self, job: Job, engine: Engine) -> None:
        job.deleteLater()
        if job is not self._loading:
            return
        self._loading = None
        self._engine = engine
        self._clear_gallery()
        self._show_models()
        self._set_status("models ready")
        self._refresh_busy()
        self.modelsChanged.emit(engine.describe())
        self.engineReady.emit()
        if self._mask is not None and (self.auto_preview.isChecked() or self._waiting_for_engine):
            self._submit_preview()  # the sketch on screen, redone with the new models

    def _on_engine_failed(self, job: Job, message: str) -> None:
        job.deleteLater()
        if job is not self._loading:
            return
        self._loading = None
        self._show_models()
        self._refresh_busy()
        kept = "the previous models stay in use" if self._engine is not None else "no models are loaded"
        self._show_error("Could not load models", f"{message}\n\n({kept})")
        self._set_status(f"could not load models: {message}")
        self.modelsFailed.emit(message)
        if self._waiting_for_engine and self._engine is not None:
            self._submit_preview()

    def _on_class_models_ready(self) -> None:
        self._show_models()
        self.modelsChanged.emit(self.class_models.engine.describe())
        if self._table is not None and self._mask is not None and self._waiting_for_engine:
            self._submit_preview()

    def _on_class_models_failed(self, message: str) -> None:
        self._show_error("Could not load the class models", message)
        if self._table is not None:
            self._submit_preview()  # says why in the panes

    def _active_engine(self) -> Optional[Engine]:
        """The loaded engine for the sketch on screen (the class models for a class sketch), starting no load."""
        if self._table is None or draws(self._engine, self._table):
            return self._engine
        return self.class_models.engine

    def _show_models(self) -> None:
        """The models of the sketch on screen: the class models for a class sketch drawn by them."""
        engine = self._active_engine()
        if self._table is not None and engine is None:
            self.models_label.setText("Class models: loading…" if self.class_models.loading else
                                      "Class models: none loaded")
            return
        if engine is None:
            self.models_label.setText("Models: none loaded")
            return
        about = engine.describe()
        if self._table is not None and engine.joint_sketches:  # the mask model is not used: one pass
            self.models_label.setText(f"Models — sketch → label map and tile in one pass: {about['rgb']}")
            return
        self.models_label.setText(f"Models — mask: {about['mask']}; RGB: {about['rgb']}")

    # --- previews -----------------------------------------------------------------------------------------------
    def set_preview_delay(self, ms: int) -> None:
        """Milliseconds between the last ``request_preview`` and the model run."""
        self._timer.setInterval(max(0, int(ms)))

    def preview_delay(self) -> int:
        return self._timer.interval()

    def request_preview(self, mask: np.ndarray, classes: Optional[ClassTable] = None) -> None:
        """The sketch changed: preview it shortly (debounced), superseding any preview under way.

        ``classes``: the sketch is a label map of this table (None or ``BINARY``: a 255/0 mask)."""
        mask = np.array(mask, copy=True)  # the canvas keeps drawing into its own array
        table = None if classes is None or classes == BINARY else classes
        if (table is None) != (self._table is None) or (table is not None and table.names != self._table.names):
            self._clear_gallery()  # binary <-> classes: other models, other results
            self._cancel_preview()
            self._table = table
            self._show_models()
            if self._active_engine() is not None:  # the window's status bar and About follow
                self.modelsChanged.emit(self._active_engine().describe())
        self._mask, self._table = mask, table
        if self._gallery_mask is not None and not np.array_equal(self._gallery_mask, mask):
            self._clear_gallery()  # its variations belong to another sketch
        hint = mask_hint(mask, labels=table is not None)
        if hint is not None:
            self._timer.stop()
            self._cancel_preview()
            self._show_unavailable(hint)
            return
        if not self.auto_preview.isChecked():
            self._set_status("auto preview is off: press Generate")
            return
        self._timer.start()

    def generate_now(self) -> None:
        """Preview the current sketch now, whether auto preview is on or not."""
        if self._mask is None:
            self._set_status("nothing to generate: draw a sketch first")
            return
        self._timer.stop()
        self._submit_preview()

    def _show_unavailable(self, why: str) -> None:
        """The sketch, and why it has no fine mask or tile (a hint, or no model for its classes)."""
        self._show_map("coarse", self._mask, self._table)
        for name in ("fine", "rgb"):
            self.panes[name].show_image(None)
            self.panes[name].view.set_placeholder(why)  # not a stale "RGB stage off"
        self._shown = None
        self._refresh_save_all()
        self._set_status(why)

    def _maker(self, table: Optional[ClassTable]):
        """What makes one sample of a sketch of ``table``."""
        return generate_sample if table is None else partial(generate_class_sample, table=table)

    def _submit_preview(self) -> None:
        mask, table = self._mask, self._table
        if mask is None:
            return
        hint = mask_hint(mask, labels=table is not None)
        if hint is not None:
            self._set_status(hint)
            return
        engine = self.engine_for(table)
        if engine is None or (table is not None and not draws(engine, table)):
            why, self._waiting_for_engine = self._no_engine(table)
            if table is not None:  # the panes say it too, rather than keep another sketch's results
                self._show_models()
                self._refresh_busy()
                self._show_unavailable(why)
            self._set_status(why)
            return
        self._waiting_for_engine = False
        self._preview_engine = engine
        self._request_id += 1
        rid, seed, relay, make = self._request_id, self.seed(), self._relay, self._maker(table)

        def job(progress: ProgressFn, cancel: CancelToken):
            sample = make(engine, mask, seed, on_fine=lambda fine: relay.fine.emit(rid, (mask, seed, fine, table)),
                          progress=lambda d, t, m: relay.progress.emit(rid, d, t, m), cancel=cancel)
            return rid, sample

        self._latest.submit(job, f"preview (seed {seed})")
        self._set_status(f"generating (seed {seed})…")

    def _on_fine(self, rid: int, payload) -> None:
        if rid != self._request_id:
            return  # a superseded request
        coarse, seed, fine, table = payload
        self._show_map("coarse", coarse, table)
        self._show_map("fine", fine, table, f"seed {seed}")
        engine = self._preview_engine
        if engine is not None and engine.rgb_model is not None:
            self.panes["rgb"].show_pending("updating…")
        self._shown = None  # the RGB on screen no longer matches
        self._refresh_save_all()

    def _on_preview_progress(self, rid: int, done: int, total: int, message: str) -> None:
        if rid == self._request_id and self._variations_job is None and total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)

    def _on_preview_done(self, result) -> None:
        rid, sample = result
        if rid != self._request_id:
            return
        self._show_sample(sample)
        self._set_status(f"preview ready (seed {sample.seed})")
        self.previewShown.emit(sample.seed)

    def _on_preview_failed(self, message: str) -> None:
        self.panes["rgb"].show_stopped("failed")
        self._show_error("Preview failed", message)
        self._set_status(f"preview failed: {message}")

    def _cancel_preview(self) -> None:
        self._request_id += 1  # whatever is under way is stale now
        self._latest.cancel()

    def render_fine(self, fine: np.ndarray, name: str = "") -> None:
        """A fine mask the user already has -> its RGB tile, the mask stage skipped (shown until the next stroke)."""
        engine = self.engine()
        if engine is None or engine.rgb_model is None:
            self._set_status("an RGB model is needed to draw a fine mask (Models menu)")
            return
        self._timer.stop()
        self._request_id += 1
        rid, seed = self._request_id, self.seed()
        relay = self._relay

        def job(progress: ProgressFn, cancel: CancelToken):
            rgb = engine.rgb(fine, seed, lambda d, t, m: relay.progress.emit(rid, d, t, m), cancel)
            return rid, Sample(seed, None, fine, rgb)

        self._show_map("fine", fine, None, name)
        self.panes["rgb"].show_pending("updating…")
        self._latest.submit(job, f"RGB for {name or 'a fine mask'} (seed {seed})")
        self._set_status(f"drawing the RGB tile of {name or 'the fine mask'} (seed {seed})…")

    def _show_map(self, kind: str, image: Optional[np.ndarray], table: Optional[ClassTable], note: str = "") -> None:
        """A coarse or fine mask, or a label map of ``table`` in its classes' colours."""
        pane = self.panes[kind]
        words = {"coarse": ("Coarse sketch", "Coarse sketch"), "fine": ("Fine mask", "Fine label map")}[kind]
        pane.set_title(words[table is not None])
        if table is None or image is None:
            pane.show_image(image, note)
        else:
            pane.show_labels(image, table, note)

    def _show_sample(self, sample: Sample) -> None:
        self._show_map("coarse", sample.coarse, sample.table)
        if sample.coarse is None:
            self.panes["coarse"].view.set_placeholder("a fine mask was opened: no sketch")
        self._show_map("fine", sample.fine, sample.table, f"seed {sample.seed}")
        if sample.rgb is not None:
            self.panes["rgb"].show_image(sample.rgb, f"seed {sample.seed}", outlined=nuclei_outlines(sample))
        else:
            self.panes["rgb"].show_image(None)
            self.panes["rgb"].view.set_placeholder("RGB stage off (Models menu)")
        self._shown = sample
        self._refresh_save_all()

    def current_results(self) -> dict[str, np.ndarray]:
        """The arrays of the complete result on screen: "coarse", "fine" and (with an RGB model) "rgb"."""
        return self._shown.arrays() if self._shown is not None else {}

    def shown_seed(self) -> Optional[int]:
        return self._shown.seed if self._shown is not None else None

    # --- seed ---------------------------------------------------------------------------------------------------
    def seed(self) -> int:
        return self.seed_spin.value()

    def set_seed(self, seed: int) -> None:
        """Set the seed (previewing again when auto preview is on)."""
        self.seed_spin.setValue(int(seed))

    def new_seed(self) -> int:
        seed = random.randint(0, MAX_SEED)
        self.set_seed(seed)
        return seed

    def _on_seed_changed(self, seed: int) -> None:
        self.gallery.highlight_seed(seed)  # the highlight follows the seed, whoever changed it
        if self._mask is not None and self.auto_preview.isChecked():
            self._timer.start()

    def _on_auto_toggled(self, on: bool) -> None:
        if on and self._mask is not None:
            self._timer.start()

    # --- variations ---------------------------------------------------------------------------------------------
    def start_variations(self, count: Optional[int] = None) -> Optional[Job]:
        """Fill the gallery with ``count`` (default: the spinbox) results for seeds seed, seed+1, ..."""
        count = self.variations_spin.value() if count is None else max(1, min(MAX_VARIATIONS, int(count)))
        mask, table = self._mask, self._table
        hint = mask_hint(mask, labels=table is not None) if mask is not None else "draw a sketch first"
        if hint is not None:
            self._set_status(hint)
            return None
        engine = self.engine_for(table)
        if engine is None or (table is not None and not draws(engine, table)):
            self._set_status(self._no_engine(table)[0])
            return None
        if self._variations_job is not None:
            self._variations_job.cancel()
        self._clear_gallery()
        self.gallery.setVisible(True)
        self._gallery_mask = mask
        self._variations_id += 1
        vid, first, relay, make = self._variations_id, self.seed(), self._relay, self._maker(table)

        def on_sample(k: int, sample: Sample) -> None:
            relay.sample.emit(vid, k, (sample, variation_thumbnail(sample)))

        job = Job(lambda progress, cancel: generate_variations(engine, mask, first, count, on_sample, progress,
                                                               cancel, make), "variations", self)
        job.progress.connect(lambda done, total, message, job=job: self._on_variations_progress(job, done, total))
        job.finished.connect(lambda samples, job=job: self._on_variations_ended(job, f"{len(samples)} variations"))
        job.failed.connect(lambda message, job=job: self._on_variations_ended(job, None, message))
        job.cancelled.connect(lambda job=job: self._on_variations_ended(job, "variations stopped"))
        self._variations_job = job
        self.progress_bar.setRange(0, count)
        self.progress_bar.setValue(0)
        self._set_status(f"generating {count} variations from seed {first}…")
        job.start()
        self._refresh_busy()
        return job

    def _on_variation(self, vid: int, index: int, payload) -> None:
        if vid != self._variations_id:
            return
        sample, thumbnail = payload
        self._variations.append(sample)
        self.gallery.add_variation(len(self._variations) - 1, sample.seed, thumbnail)
        if sample.seed == self.seed():
            self.gallery.highlight_seed(sample.seed)

    def _on_variations_progress(self, job: Job, done: int, total: int) -> None:
        if job is self._variations_job and total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)

    def _on_variations_ended(self, job: Job, status: Optional[str], error: Optional[str] = None) -> None:
        job.deleteLater()
        if job is not self._variations_job:
            return
        self._variations_job = None
        self._refresh_busy()
        if error is not None:
            self._show_error("Variations failed", error)
            self._set_status(f"variations failed: {error}")
            return
        self._set_status(status or "")
        self.variationsReady.emit(len(self._variations))

    def variations(self) -> list[Sample]:
        return list(self._variations)

    def choose_variation(self, index: int) -> None:
        """Make variation ``index`` current: its seed goes to the spinbox and its images to the panes."""
        if not 0 <= index < len(self._variations):
            return
        sample = self._variations[index]
        self._timer.stop()
        self._cancel_preview()
        self.seed_spin.blockSignals(True)  # the result is here already; no new model run
        self.seed_spin.setValue(sample.seed)
        self.seed_spin.blockSignals(False)
        self.gallery.highlight_seed(sample.seed)
        self._show_sample(sample)
        self._set_status(f"variation with seed {sample.seed}")
        self.previewShown.emit(sample.seed)

    def _clear_gallery(self) -> None:
        if self._variations_job is not None:
            self._variations_job.cancel()
        self._variations_id += 1
        self._variations = []
        self._gallery_mask = None
        self.gallery.clear()

    # --- saving -------------------------------------------------------------------------------------------------
    def set_sketch_name(self, name: Optional[str]) -> None:
        """The base name of saved files (``<name>_seed<N>_fine.png`` ...): the sketch file's stem, or "untitled"."""
        self._name = name or UNTITLED

    def sketch_name(self) -> str:
        return self._name

    def save_result(self, kind: str, path: Union[str, Path]) -> Optional[Job]:
        """Write the shown ``kind`` ("coarse", "fine" or "rgb") to ``path`` as PNG, off the GUI thread; a label
        map as an indexed PNG with its classes.json."""
        image, table = self.panes[kind].data, self.panes[kind].table
        if image is None:
            self._set_status(f"no {kind} image to save yet")
            return None
        if table is not None:
            return self._run_save(lambda progress, cancel: save_label_image(path, image, table), f"save {kind}")
        return self._run_save(lambda progress, cancel: [save_image(path, image)], f"save {kind}")

    def save_all(self, folder: Union[str, Path], name: Optional[str] = None) -> Optional[Job]:
        """Write ``<name>_coarse.png``, ``_fine.png`` and ``_rgb.png`` of the shown result into ``folder`` (label
        maps as indexed PNGs, with their classes.json)."""
        results, sample = self.current_results(), self._shown
        if not results:
            self._set_status("nothing to save yet: wait for the preview")
            return None
        name = name or self._result_name()
        if sample.table is not None:
            return self._run_save(lambda progress, cancel: save_class_results(folder, name, sample), "save all")
        return self._run_save(lambda progress, cancel: save_results(folder, name, results), "save all")

    def _result_name(self) -> str:
        return f"{self._name}_seed{self._shown.seed}" if self._shown is not None else self._name

    def _run_save(self, fn, name: str) -> Job:
        job = Job(fn, name, self)
        job.finished.connect(lambda paths, job=job: self._on_saved(job, paths))
        job.failed.connect(lambda message, job=job: self._on_save_failed(job, message))
        self._save_jobs.add(job)  # keeps the job alive while it runs
        return job.start()

    def _on_saved(self, job: Job, paths: list[Path]) -> None:
        self._save_jobs.discard(job)
        job.deleteLater()
        self._set_status("saved " + ", ".join(p.name for p in paths) + f" in {paths[0].parent}" if paths else "")
        self.saved.emit([str(p) for p in paths])

    def _on_save_failed(self, job: Job, message: str) -> None:
        self._save_jobs.discard(job)
        job.deleteLater()
        self._show_error("Could not save", message)

    def _ask_save(self, kind: str) -> None:
        folder = self.folders.save_folder(RESULTS)
        start = str(Path(folder) / f"{free_name(folder, self._result_name(), [kind])}_{kind}.png")
        path, _ = QFileDialog.getSaveFileName(self, f"Save the {kind} image", start, "PNG images (*.png)")
        if path:  # the dialog itself asks before replacing a file the user picked
            self.folders.remember(RESULTS, path)
            self.save_result(kind, path)

    def _ask_save_all(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save coarse, fine and RGB into",
                                                  self.folders.save_folder(RESULTS))
        if folder:
            self.folders.remember(RESULTS, folder)
            self.save_all(folder)

    def _refresh_save_all(self) -> None:
        self.save_all_button.setEnabled(self._shown is not None)

    # --- state --------------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the preview and the variations under way."""
        self._timer.stop()
        self._cancel_preview()
        self.panes["rgb"].show_stopped("cancelled")
        if self._variations_job is not None:
            self._variations_job.cancel()
        self._set_status("cancelled")

    def shutdown(self) -> None:
        """Cancel everything before the window closes (running jobs end at their next check)."""
        self._timer.stop()
        self._cancel_preview()
        for job in (self._variations_job, self._loading, *self._save_jobs):
            if job is not None:
                job.cancel()
        self.class_models.cancel()

    def is_previewing(self) -> bool:
        """A preview job is running or queued."""
        return not self._latest.idle

    def is_idle(self) -> bool:
        """Nothing pending or running: no debounce timer, preview, variations, model load or save."""
        return (not self._timer.isActive() and self._latest.idle and self._variations_job is None
                and self._loading is None and not self.class_models.loading and not self._save_jobs)

    def _refresh_busy(self) -> None:
        previewing = not self._latest.idle
        loading = self._loading is not None or self.class_models.loading
        running = previewing or self._variations_job is not None or loading
        self.progress_bar.setVisible(running)
        if running and self._variations_job is None:
            self.progress_bar.setRange(0, 0)  # busy until the RGB stage reports tiles
        self.cancel_button.setEnabled(previewing or self._variations_job is not None)

    def _set_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.statusMessage.emit(text)

    def _show_error(self, title: str, message: str) -> None:
        """One box at a time: a burst of failing previews updates the open box instead of stacking new ones."""
        box = self._error_box
        try:
            if box is not None and box.isVisible():
                box.setWindowTitle(title)
                box.setText(message)
                return
        except RuntimeError:  # the box was closed and deleted
            pass
        self._error_box = show_error(self, title, message)
