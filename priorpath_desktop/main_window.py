"""The main window: the canvas in the centre, tools, clusters, generation and training around it.

The window owns the document and wires the parts together; each part does its own work (in workers where
it is slow). Window geometry and dock layout go to QSettings; user choices go to the preferences file.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QDockWidget, QFileDialog, QFormLayout, QLabel,
                               QMainWindow, QMessageBox, QScrollArea, QSpinBox, QWidget)

from trainer import __version__
from trainer.data.classes import BINARY, ClassTable
from trainer.data.mask_files import MaskRead, read_mask_file
from trainer.errors import PriorPathError
from trainer.inference import default_model_path, resources_dir

from .autosave import Autosaver
from .canvas import CanvasView
from .class_sketch import ClassSketchDialog
from .cluster_browser import ClusterBrowser
from .document import MaskDocument, read_image
from .export_dialog import ExportDialog
from .folders import MASKS, MODELS, STYLE, UNDERLAYS, FolderMemory
from .generation_view import GenerationView
from .messages import show_error, show_info
from .preferences import APP_NAME, Preferences, config_dir
from .slide_dialog import SlideDialog
from .tool_panel import ToolPanel
from .training_panel import TrainingPanel
from .workers import Job

log = logging.getLogger(__name__)

MASK_FILTER = ("Masks (*.png *.tif *.tiff *.jpg *.jpeg *.bmp *.json *.geojson);;Labelme JSON (*.json);;"
               "QuPath GeoJSON (*.geojson *.json);;All files (*)")
MODEL_FILTER = "PriorPath checkpoints (*.safetensors);;All files (*)"
LARGE_SKETCH_PIXELS = 2048 * 4096  # beyond this, previews take many seconds on a CPU
# At the window's smallest the canvas keeps about half the width: the side docks scroll instead
CANVAS_MIN = QSize(360, 240)
TOOLS_MIN_WIDTH, CLUSTERS_MIN_WIDTH = 150, 220
NOTICE_MS = 15000  # a notice about what opening a file changed stays long enough to be read


def app_icon() -> QIcon:
    return QIcon(str(resources_dir() / "icons" / "priorpath.svg"))


class MainWindow(QMainWindow):
    """``mask_model``/``rgb_model``/``device``/``dataset`` override the preferences for this session."""

    def __init__(self, mask_model: Optional[str] = None, rgb_model: Optional[str] = None,
                 device: Optional[str] = None, dataset: Optional[str] = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.prefs = Preferences.load()
        self.mask_model = mask_model or self.prefs.mask_model
        self.rgb_model = rgb_model or self.prefs.rgb_model
        self.device = device or self.prefs.device
        self.style: Optional[list[str]] = None  # stain reference for the RGB stage (Models menu)
        self.dataset = dataset or self.prefs.dataset
        self.ask_before_discarding = True  # tests switch the close/new confirmations off

        self.setWindowIcon(app_icon())
        self.document = MaskDocument(*self.prefs.canvas_size, undo_depth=self.prefs.undo_depth)
        self.autosaver = Autosaver(config_dir() / "autosave")

        self.canvas = CanvasView(self)
        self.canvas.set_document(self.document)
        self.canvas.set_autosaver(self.autosaver)  # after every stroke; large masks in a worker
        self.canvas.set_brush_radius(self.prefs.brush_radius)
        self.canvas.set_underlay_opacity(self.prefs.underlay_opacity)
        self.canvas.setMinimumSize(CANVAS_MIN)
        self.setCentralWidget(self.canvas)
        # file dialogs start where that kind of file was last chosen (saved with the preferences)
        self.folders = FolderMemory(self.prefs, lambda: self._prefs_timer.start())

        self.tools = ToolPanel(self.canvas)
        self.clusters = ClusterBrowser(self)
        self.generation = GenerationView(self, preferences=self.prefs, folders=self.folders)
        self.generation.set_preview_delay(self.prefs.preview_delay_ms)
        self.training = TrainingPanel(self, folders=self.folders)
        self.docks = {
            "tools": self._dock("Tools", self.tools, Qt.DockWidgetArea.LeftDockWidgetArea, TOOLS_MIN_WIDTH),
            "clusters": self._dock("Real tissue clusters", self.clusters, Qt.DockWidgetArea.RightDockWidgetArea,
                                   CLUSTERS_MIN_WIDTH),
            "generation": self._dock("Generation", self.generation, Qt.DockWidgetArea.BottomDockWidgetArea),
            "training": self._dock("Training and evaluation", self.training, Qt.DockWidgetArea.BottomDockWidgetArea),
        }
        self.tabifyDockWidget(self.docks["generation"], self.docks["training"])
        self.docks["generation"].raise_()

        self._status_cursor = QLabel()
        self._status_zoom = QLabel()
        self._status_models = QLabel("loading models…")
        for label in (self._status_cursor, self._status_zoom, self._status_models):
            self.statusBar().addPermanentWidget(label)

        self._prefs_timer = QTimer(self)  # preferences are written shortly after a change, so a crash keeps them
        self._prefs_timer.setSingleShot(True)
        self._prefs_timer.setInterval(500)
        self._prefs_timer.timeout.connect(self._save_prefs)

        self._build_menus()
        self._connect()
        self._restore_layout()
        self._update_title()

    # --- construction -----------------------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea, min_width: int = 0) -> QDockWidget:
        """A dock holding ``widget``; with ``min_width``, a side dock that may be narrower than its content (which
        then scrolls), so a small window leaves the room to the canvas."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title}")  # saveState needs names
        if min_width:
            scroll = QScrollArea()
            scroll.setWidget(widget)
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            scroll.setMinimumWidth(min_width)
            dock.setWidget(scroll)
        else:
            dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&New sketch…", self.new_sketch, QKeySequence.StandardKey.New)
        self._action(file, "New &class sketch…", self.new_class_sketch,
                     tip="draw classes (e.g. air, stroma, nuclei) instead of tissue and air")
        self._action(file, "&Open mask…", self.open_dialog, QKeySequence.StandardKey.Open,
                     "open a PNG/TIFF mask, an indexed PNG label map or a Labelme JSON")
        self._action(file, "Import &Labelme JSON…", self.import_labelme_dialog)
        self._action(file, "Open &fine mask for the RGB stage…", self.open_fine_dialog,
                     tip="draw the RGB tile of a fine mask you already have, skipping the mask stage")
        self.recent_menu = file.addMenu("Open &recent")
        self._fill_recent()
        file.addSeparator()
        self._action(file, "&Save", self.save, QKeySequence.StandardKey.Save)
        self._action(file, "Save &as…", self.save_as, QKeySequence.StandardKey.SaveAs)
        file.addSeparator()
        self._action(file, "Load &underlay image…", self.underlay_dialog)
        self._action(file, "&Export synthetic dataset…", self.export_dialog, "Ctrl+E")
        self._action(file, "Export as s&lide…", self.slide_dialog,
                     tip="generate the sketch at N times its size into a pyramidal TIFF that QuPath opens")
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        edit = bar.addMenu("&Edit")
        self.undo_action = self._action(edit, "&Undo", self.canvas.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action(edit, "&Redo", self.canvas.redo, QKeySequence.StandardKey.Redo)
        edit.addSeparator()
        self._action(edit, "&Clear", self.canvas.clear, "Ctrl+Shift+Backspace")
        self._action(edit, "&Invert", self.canvas.invert, "Ctrl+I")

        view = bar.addMenu("&View")
        self._action(view, "&Fit to window", self.canvas.fit_to_window, "Ctrl+0")
        self._action(view, "Zoom &in", lambda: self.canvas.set_zoom(self.canvas.zoom() * 1.25), QKeySequence.StandardKey.ZoomIn)
        self._action(view, "Zoom &out", lambda: self.canvas.set_zoom(self.canvas.zoom() / 1.25), QKeySequence.StandardKey.ZoomOut)
        view.addSeparator()
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        self._action(view, "&Reset layout", self.reset_layout)

        models = bar.addMenu("&Models")
        self._action(models, "Coarse→fine model…", lambda: self.choose_model("mask"))
        self._action(models, "Fine→RGB model…", lambda: self.choose_model("rgb"))
        self.no_rgb_action = self._action(models, "No RGB stage (masks only)", self._toggle_rgb)
        self.no_rgb_action.setCheckable(True)
        self.no_rgb_action.setChecked(self.rgb_model is not None and str(self.rgb_model).lower() == "none")
        self._action(models, "Use the bundled default models", self.use_default_models)
        models.addSeparator()
        self._action(models, "Stain style from a folder…", self.style_folder_dialog,
                     tip="real H&E tiles (or a prepared folder): the RGB stage copies or matches their stain")
        self._action(models, "Stain style from images…", self.style_files_dialog)
        self.no_style_action = self._action(models, "No stain style (the model's own)", lambda: self.set_style(None))
        self.no_style_action.setEnabled(False)
        device_menu = models.addMenu("&Device")
        group = QActionGroup(self)
        for name in ("auto", "cpu", "cuda", "mps"):
            action = QAction(name, self, checkable=True)
            action.setChecked(name == self.device)
            action.triggered.connect(lambda checked, name=name: self.set_device(name))
            group.addAction(action)
            device_menu.addAction(action)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard and pen…", self.show_shortcuts, QKeySequence.StandardKey.HelpContents)
        self._action(help_menu, "&About PriorPath Desktop", self.show_about)

    def _connect(self) -> None:
        self.canvas.documentEdited.connect(self._on_edited)
        self.canvas.brushRadiusChanged.connect(self._brush_changed)
        self.canvas.cursorMoved.connect(lambda x, y: self._status_cursor.setText(f"x {x}  y {y}"))
        self.canvas.zoomChanged.connect(lambda z: self._status_zoom.setText(f"{z * 100:.0f} %"))
        self.clusters.underlayRequested.connect(self.canvas.set_underlay)
        self.clusters.sketchRequested.connect(self.start_from_mask)
        self.clusters.classSketchRequested.connect(self.start_from_labels)
        self.clusters.styleRequested.connect(self.set_style)
        self.clusters.datasetChanged.connect(self._dataset_chosen)
        self.clusters.clustered.connect(self._clustered)
        self.clusters.statusMessage.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.generation.statusMessage.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.generation.modelsChanged.connect(self._on_models_changed)
        self.generation.modelsFailed.connect(lambda m: self._status_models.setText("models: load failed"))
        self.training.adoptRequested.connect(self.adopt_model)
        self.training.statusMessage.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.training.runFolderChanged.connect(self._remember_run)

    def _dataset_chosen(self, folder) -> None:
        self.dataset = self.prefs.dataset = str(folder) if folder else None
        self._prefs_timer.start()

    def _clustered(self, result) -> None:
        """The training panel starts on the dataset the browser shows (e.g. the prepared bundled sample)."""
        self.training.set_default_dataset(str(result.folder))

    def _remember_run(self, folder: str) -> None:
        """Written at once (not only on close), so a run is re-attached even after a crash or a kill."""
        self.prefs.last_run = folder
        self._prefs_timer.start()

    def _brush_changed(self, radius: int) -> None:
        self.prefs.brush_radius = int(radius)
        self._prefs_timer.start()

    def _save_prefs(self) -> None:
        self.prefs.underlay_opacity = self.canvas.underlay_opacity()
        self.prefs.seed = self.generation.seed()
        self.prefs.variations = self.generation.variations_spin.value()
        try:
            self.prefs.save()
        except (OSError, PriorPathError) as exc:  # a full or read-only disk must not interrupt the drawing
            log.warning("preferences not saved: %s", exc)

    # --- start-up ---------------------------------------------------------------------------------------------
    def start(self, open_path: Optional[Path] = None) -> None:
        """Load models and the cluster dataset in workers; open a file or offer to recover a crashed sketch."""
        self.generation.set_models(self.mask_model, self.rgb_model, self.device, self.style)
        self.clusters.set_dataset(self.dataset)
        self.restore_training()
        if self.dataset:
            self.training.set_default_dataset(self.dataset)
        if self.autosaver.recoverable():
            self._offer_recovery(open_path)
        elif open_path is not None:
            self.open_path(open_path)
        QTimer.singleShot(0, self.canvas.fit_to_window)

    def restore_training(self) -> None:
        """The training form of the last session, and the last run folder re-attached if it still exists, so
        Resume works at once; that folder is kept in the preferences from the moment a run starts, so this also
        holds after a crash."""
        last_run = self.prefs.last_run  # read first: restoring the form reports its (possibly older) run folder
        saved = self._settings().value("training")
        if isinstance(saved, str):
            try:
                self.training.apply_settings(json.loads(saved))
            except ValueError:
                pass
        if last_run and Path(last_run).is_dir() and self.training.run_dir() != Path(last_run):
            self.training.set_run_dir(last_run)

    def _offer_recovery(self, then_open: Optional[Path]) -> None:
        info = self.autosaver.recoverable()
        box = QMessageBox(QMessageBox.Icon.Question, "Recover sketch",
                          f"PriorPath Desktop did not close cleanly last time. Recover the unsaved sketch "
                          f"({info.describe()})?", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setObjectName("recoveryQuestion")

        def answered(button: int) -> None:
            if button == QMessageBox.StandardButton.Yes:
                self.recover()
            else:
                self.autosaver.discard()
                if then_open is not None:
                    self.open_path(then_open)

        box.finished.connect(answered)
        box.open()

    def recover(self) -> None:
        try:
            document = self.autosaver.recover()
        except PriorPathError as exc:
            show_error(self, "Recovery failed", str(exc))
            return
        self._set_document(document, keep_autosave=True)
        self.statusBar().showMessage("recovered the unsaved sketch", 5000)

    # --- the document -----------------------------------------------------------------------------------------
    def _set_document(self, document: MaskDocument, keep_autosave: bool = False,
                      name: Optional[str] = None) -> None:
        """Show a new, opened or recovered document; the autosave of the previous one is no longer needed.

        ``name`` (default: the file's stem) names the generation view's saved results."""
        if not keep_autosave:
            self.autosaver.discard()
        self.generation.set_sketch_name(name or (document.path.stem if document.path else None))
        self.document = document
        self.canvas.set_document(document)  # fits the new mask to the window
        self._on_edited()

    def _on_edited(self) -> None:
        """After every completed edit (the canvas has already autosaved it): title and live preview."""
        self._update_title()
        doc = self.document  # the view keeps its own copy; a class sketch goes as its label map
        if doc.is_binary:
            self.generation.request_preview(doc.mask)
        else:
            self.generation.request_preview(doc.labels, doc.classes)

    def start_from_mask(self, mask: np.ndarray) -> None:
        """A coarse mask from the cluster browser becomes the sketch (one undoable step)."""
        self.document.replace(np.asarray(mask, dtype=np.uint8))

    def start_from_labels(self, labels: np.ndarray, classes: ClassTable) -> None:
        """A coarse label map from the cluster browser becomes the sketch: one undoable step when the sketch is
        drawn in the same classes, else a new class sketch in its classes (unsaved changes are asked about)."""
        try:
            if self.document.classes == classes:
                self.document.replace(labels, classes)
                return
            if not self._may_discard():
                return
            document = MaskDocument.from_labels(labels, classes, undo_depth=self.prefs.undo_depth)
        except PriorPathError as exc:
            show_error(self, "Cannot start a sketch from this label map", str(exc))
            return
        document.mark_unsaved()  # a new sketch that no file holds yet
        self._set_document(document)
        self.statusBar().showMessage(f"new class sketch in {classes.name}: {', '.join(classes.names[1:])}", 5000)

    def new_sketch(self) -> None:
        if not self._may_discard():
            return
        dialog = QDialog(self)
        dialog.setWindowTitle("New sketch")
        form = QFormLayout(dialog)
        height, width = QSpinBox(), QSpinBox()
        for box, value in ((height, self.prefs.canvas_size[0]), (width, self.prefs.canvas_size[1])):
            box.setRange(16, 20000)
            box.setValue(value)
            box.setSuffix(" px")
        form.addRow("Height", height)
        form.addRow("Width", width)
        note = QLabel()
        note.setWordWrap(True)
        dialog.setMinimumWidth(440)  # room for the large-size warning, which wraps

        def describe_size() -> None:
            pixels = height.value() * width.value()
            note.setText("" if pixels <= LARGE_SKETCH_PIXELS else
                         f"A large sketch: the models run on it tile by tile, so each preview takes about "
                         f"{pixels / (512 * 1024):.0f}x as long as at 512x1024 (where the RGB takes about 2 s "
                         f"on a CPU). Turn Auto preview off and use Generate while you draw.")
            dialog.adjustSize()

        height.valueChanged.connect(describe_size)
        width.valueChanged.connect(describe_size)
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        form.addRow(buttons)

        dialog.accepted.connect(lambda: self._new_document(height.value(), width.value()))
        dialog.open()

    def new_class_sketch(self) -> Optional[ClassSketchDialog]:
        """A new sketch drawn in classes: the dialog asks for the size and the class table."""
        if not self._may_discard():
            return None
        dialog = ClassSketchDialog(self.prefs.canvas_size, self.folders, self)
        dialog.accepted.connect(lambda: self._new_document(*dialog.sketch_size(), classes=dialog.table()))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.open()
        return dialog

    def _new_document(self, height: int, width: int, classes: ClassTable = BINARY) -> None:
        if height * width <= LARGE_SKETCH_PIXELS:  # a one-off huge canvas is not the new default
            self.prefs.canvas_size = (height, width)
            self._prefs_timer.start()
        self._set_document(MaskDocument(height, width, undo_depth=self.prefs.undo_depth, classes=classes))

    def open_dialog(self) -> None:
        if not self._may_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open mask", self.folders.open_folder(MASKS), MASK_FILTER)
        if path:
            self.folders.remember(MASKS, path)
            self.open_path(Path(path))

    def import_labelme_dialog(self) -> None:
        if not self._may_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import Labelme JSON", self.folders.open_folder(MASKS),
                                              "Labelme JSON (*.json)")
        if path:
            self.folders.remember(MASKS, path)
            self.open_path(Path(path))

    def open_path(self, path: Path) -> None:
        """Read the file in a worker (a large TIFF takes a while); errors name the file."""
        path = Path(path)
        edits = (self.document, self.document.version)  # strokes drawn while the file loads are asked about
        self._run_job(lambda progress, cancel: MaskDocument.open(path, undo_depth=self.prefs.undo_depth), "open",
                      lambda document: self._opened(document, path, edits), "Cannot open mask")

    def _run_job(self, fn, name: str, on_result, error_title: str) -> Job:
        job = Job(fn, name, self)
        job.finished.connect(on_result)
        job.failed.connect(lambda message: show_error(self, error_title, message))
        for ended in (job.finished, job.failed, job.cancelled):
            ended.connect(job.deleteLater)
        return job.start()

    def _opened(self, document: MaskDocument, path: Path, edits: tuple) -> None:
        if (self.document, self.document.version) != edits and not self._may_discard():
            return  # the user drew meanwhile and wants to keep it
        if path.suffix.lower() in (".json", ".geojson"):
            document.path = None  # a Labelme or QuPath import is saved as a new PNG, never over the JSON
        self._set_document(document, name=path.stem)
        self.prefs.add_recent(str(path))
        self._fill_recent()
        if document.open_notice:  # a grey mask was thresholded: the user must know the sketch is not the file
            self.statusBar().showMessage(document.open_notice, NOTICE_MS)
        else:
            self.statusBar().showMessage(f"opened {path}", 5000)

    def save(self) -> bool:
        path = self.document.path
        if path is None or path.suffix.lower() != ".png":
            return self.save_as()
        return self._save_to(path)

    def save_as(self) -> bool:
        current = self.document.path
        name = current.with_suffix(".png").name if current else f"{self.generation.sketch_name()}.png"
        # next to the opened file when that folder is writable, never in a read-only one
        start = self.folders.save_path(MASKS, name, current.parent if current else None)
        kind = "PNG mask (*.png)" if self.document.is_binary else "Label map, indexed PNG (*.png)"
        path, _ = QFileDialog.getSaveFileName(self, "Save mask", start, kind)
        if not path:
            return False
        self.folders.remember(MASKS, path)
        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        return self._save_to(path)

    def _save_to(self, path: Path) -> bool:
        try:
            self.document.save_png(path)
        except (OSError, PriorPathError) as exc:
            show_error(self, "Cannot save", f"{path}: {exc}")
            return False
        self.prefs.add_recent(str(path))
        self._fill_recent()
        self.autosaver.discard()
        self.generation.set_sketch_name(path.stem)
        self._update_title()
        self.statusBar().showMessage(f"saved {path}", 5000)
        return True

    def underlay_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Underlay image", self.folders.open_folder(UNDERLAYS),
                                              "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp)")
        if path:
            self.folders.remember(UNDERLAYS, path)
            self._run_job(lambda progress, cancel: read_image(path), "underlay", self.canvas.set_underlay,
                          "Cannot load underlay")

    def _may_discard(self) -> bool:
        """True when the sketch is saved, or the user agrees to lose (or saves) the changes."""
        if not self.document.dirty or not self.ask_before_discarding:
            return True
        answer = QMessageBox.question(
            self, APP_NAME, "The sketch has unsaved changes. Save them first?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    # --- models -----------------------------------------------------------------------------------------------
    def choose_model(self, role: str) -> None:
        # the bundled models' folder until the user has chosen a checkpoint elsewhere
        folder = (self.folders.open_folder(MODELS) if MODELS in self.prefs.folders
                  else str(default_model_path(role).parent))
        path, _ = QFileDialog.getOpenFileName(self, f"{'Coarse→fine' if role == 'mask' else 'Fine→RGB'} model",
                                              folder, MODEL_FILTER)
        if path:
            self.folders.remember(MODELS, path)
            self.adopt_model(role, path)

    def adopt_model(self, role: str, path: str) -> None:
        """Use a checkpoint (e.g. one just trained) in the generation view; remembered as a preference."""
        if role == "mask":
            self.mask_model = path
            self.prefs.mask_model = path
        else:
            self.rgb_model = path
            self.prefs.rgb_model = path
            self.no_rgb_action.setChecked(False)
        self.generation.set_models(self.mask_model, self.rgb_model, self.device, self.style)
        self.docks["generation"].raise_()
        self._prefs_timer.start()

    def use_default_models(self) -> None:
        self.mask_model = self.rgb_model = self.prefs.mask_model = self.prefs.rgb_model = None
        self.no_rgb_action.setChecked(False)
        self.generation.set_models(None, None, self.device, self.style)
        self._prefs_timer.start()

    def _toggle_rgb(self, checked: bool) -> None:
        self.rgb_model = "none" if checked else self.prefs.rgb_model if self.prefs.rgb_model != "none" else None
        self.prefs.rgb_model = self.rgb_model
        self.generation.set_models(self.mask_model, self.rgb_model, self.device, self.style)
        self._prefs_timer.start()

    def set_device(self, device: str) -> None:
        self.device = self.prefs.device = device
        self.generation.set_models(self.mask_model, self.rgb_model, device, self.style)
        self._prefs_timer.start()

    def style_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Stain style: a folder of real H&E tiles",
                                                  self.folders.open_folder(STYLE))
        if folder:
            self.folders.remember(STYLE, folder)
            self.set_style([folder])

    def style_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Stain style: real H&E images", self.folders.open_folder(STYLE),
                                                "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp)")
        if files:
            self.folders.remember(STYLE, files[0])
            self.set_style(files)

    def set_style(self, paths: Optional[list[str]]) -> None:
        """Take the RGB stage's stain from these images or folders (None: the model's own); reloads the models."""
        self.style = list(paths) if paths else None
        self.no_style_action.setEnabled(self.style is not None)
        self.generation.set_models(self.mask_model, self.rgb_model, self.device, self.style)

    def open_fine_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a fine mask for the RGB stage",
                                              self.folders.open_folder(MASKS), MASK_FILTER)
        if path:
            self.folders.remember(MASKS, path)
            self.open_fine(Path(path))

    def open_fine(self, path: Path) -> None:
        """Read a fine mask in a worker (the same rule as Open) and draw its RGB tile; the sketch is left alone."""
        path = Path(path)
        self._run_job(lambda progress, cancel: read_mask_file(path), "open fine mask",
                      lambda read: self._fine_opened(read, path), "Cannot open fine mask")
        self.docks["generation"].raise_()

    def _fine_opened(self, read: MaskRead, path: Path) -> None:
        self.generation.render_fine(read.mask, path.name)
        if read.notice(path.name):
            self.statusBar().showMessage(read.notice(path.name), NOTICE_MS)

    def _on_models_changed(self, described: dict) -> None:
        self.models_in_use = dict(described)
        self._status_models.setText(f"fine: {described.get('mask', '?')} · RGB: {described.get('rgb', '?')}")

    # --- dialogs ----------------------------------------------------------------------------------------------
    def export_dialog(self) -> ExportDialog:
        def sketch() -> np.ndarray:  # a class sketch is exported as its label map
            doc = self.document
            return np.array(doc.mask if doc.is_binary else doc.labels, copy=True)

        dialog = ExportDialog(self.generation.engine, sketch, self, folders=self.folders,
                              current_classes=lambda: None if self.document.is_binary else self.document.classes,
                              class_engine_provider=self.generation.loaded_class_engine)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        saved = self._settings().value("export")
        if isinstance(saved, str):
            try:
                dialog.apply_settings(json.loads(saved))
            except ValueError:
                pass
        dialog.finished.connect(lambda _: self._settings().setValue("export", json.dumps(dialog.settings())))
        dialog.open()
        return dialog

    def slide_dialog(self) -> SlideDialog:
        """One dialog for the window's life: a slide still generating keeps running when it is closed."""
        dialog = getattr(self, "_slide", None)
        if dialog is not None and dialog.is_running():
            dialog.show()
            dialog.raise_()
            return dialog
        if dialog is not None:
            dialog.deleteLater()
        self._slide = SlideDialog(self.generation.engine, np.array(self.document.mask, copy=True),
                                  self.generation.sketch_name(), self, folders=self.folders)
        self._slide.show()
        return self._slide

    def show_about(self) -> QMessageBox:
        models = getattr(self, "models_in_use", None) or {"mask": "loading…", "rgb": "loading…"}
        text = (f"<h3>{APP_NAME} {__version__}</h3>"
                "<p>Coarse hand-drawn tissue masks → realistic fine masks → H&amp;E/IHC tiles, after "
                "<i>PriorPath: coarse-to-fine approach for controlled de-novo pathology semantic masks "
                "generation</i> (Daniel et al.).</p>"
                f"<p><b>Coarse→fine model:</b> {models.get('mask')}<br><b>Fine→RGB model:</b> {models.get('rgb')}"
                f"<br><b>Device:</b> {self._device_in_use()}</p>"
                "<p>The bundled default models and their measured quality are described in "
                "<code>resources/models/*.md</code>. Sample images: see <code>resources/sample/SOURCES.md</code>.</p>"
                "<p>Apache-2.0. Built with PySide6 (Qt), PyTorch, scikit-learn, scikit-image, OpenCV and "
                "matplotlib.</p>")
        box = QMessageBox(QMessageBox.Icon.NoIcon, f"About {APP_NAME}", text, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("aboutBox")
        box.setIconPixmap(app_icon().pixmap(64, 64))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.open()
        return box

    def _device_in_use(self) -> str:
        engine = self.generation.engine()
        return str(engine.device) if engine is not None else self.device

    def show_shortcuts(self) -> QMessageBox:
        text = ("<table>"
                "<tr><td><b>Pen</b></td><td>paints; pressure sets the brush size</td></tr>"
                "<tr><td><b>Pen's eraser end</b></td><td>erases, whatever tool is selected</td></tr>"
                "<tr><td><b>Left / right mouse</b></td><td>use the tool / erase (right-click fill and lasso "
                "fill with air)</td></tr>"
                "<tr><td><b>B, E, F, L</b></td><td>brush, eraser, bucket fill, lasso/polygon fill</td></tr>"
                "<tr><td><b>1 – 9</b></td><td>the class brush, fill and lasso paint (a class sketch); the "
                "eraser paints air</td></tr>"
                "<tr><td><b>[ and ]</b></td><td>smaller / larger brush</td></tr>"
                "<tr><td><b>Wheel, pinch</b></td><td>zoom around the cursor</td></tr>"
                "<tr><td><b>Space-drag, middle button</b></td><td>pan</td></tr>"
                "<tr><td><b>Ctrl+0</b></td><td>fit the sketch to the window</td></tr>"
                "<tr><td><b>Ctrl+Z, Ctrl+Shift+Z</b></td><td>undo, redo (one step per stroke)</td></tr>"
                "<tr><td><b>Ctrl+I, Ctrl+Shift+Backspace</b></td><td>invert, clear</td></tr>"
                "<tr><td><b>Ctrl+E</b></td><td>export a synthetic dataset</td></tr>"
                "<tr><td><b>Lasso</b></td><td>drag for freehand; or click corners, then double-click or Enter; "
                "Esc cancels</td></tr>"
                "</table>")
        return show_info(self, "Keyboard and pen", text)

    # --- state ------------------------------------------------------------------------------------------------
    def _settings(self) -> QSettings:
        return QSettings(str(config_dir() / "window.ini"), QSettings.Format.IniFormat)

    def _restore_layout(self) -> None:
        settings = self._settings()
        self._default_state = self.saveState()
        geometry, state = settings.value("geometry"), settings.value("state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:  # first start: the canvas gets most of the room, the previews a third of the height
            self.resize(1400, 900)
            self.resizeDocks([self.docks["tools"], self.docks["clusters"]], [190, 430], Qt.Orientation.Horizontal)
            self.resizeDocks([self.docks["generation"]], [330], Qt.Orientation.Vertical)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.show()

    def _fill_recent(self) -> None:
        self._prefs_timer.start()
        self.recent_menu.clear()
        for file in self.prefs.recent_files:
            action = self.recent_menu.addAction(file)
            action.triggered.connect(lambda checked=False, file=file: self._may_discard() and self.open_path(Path(file)))
        self.recent_menu.setEnabled(bool(self.prefs.recent_files))

    def _update_title(self) -> None:
        name = self.document.path.name if self.document.path else "untitled sketch"
        classes = "" if self.document.is_binary else f" [{self.document.classes.name}]"
        self.setWindowTitle(f"{name}{' *' if self.document.dirty else ''}{classes} — {APP_NAME}")

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._may_discard():
            event.ignore()
            return
        self.training.shutdown()
        self.clusters.cancel()
        self.generation.shutdown()
        self.prefs.brush_radius = self.canvas.brush_radius()
        self._prefs_timer.stop()
        self._save_prefs()
        settings = self._settings()
        settings.setValue("geometry", self.saveGeometry())
        settings.setValue("state", self.saveState())
        settings.setValue("training", json.dumps(self.training.settings()))
        settings.sync()
        self.autosaver.discard()  # closed on purpose: nothing to recover next time
        event.accept()

