"""The cluster browser: real fine masks grouped by K-means, to pick an underlay or a starting sketch.

Paper §2.4 clustered real masks and let the clusters guide the drawing of coarse sketches. This dock shows
one tile per cluster (its exemplars, nearest the centroid, and its size); opening a tile pages through the
cluster's masks, and the selected one can become the canvas underlay or the start of a new sketch.
Clustering (and preparing the bundled sample), page thumbnails and full-size images all load in workers;
the clustering itself lives in Qt-free ``trainer.clusters``, what a member shows in ``cluster_members``.
A folder with class label maps is clustered on them: thumbnails and previews show them in the class
colours, and a member's coarse label map starts a class sketch (``classSketchRequested``).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QListView,
                               QListWidget, QListWidgetItem, QProgressBar, QPushButton, QSizePolicy, QSpinBox,
                               QStackedWidget, QVBoxLayout, QWidget)

from trainer.clusters import ClusterResult, bundled_sample_dataset, cluster_dataset
from trainer.jobs import CancelToken, ProgressFn

from .cluster_members import (ALL_TISSUE, EXEMPLARS_PER_TILE, LABEL_SKETCH_TIP, MEMBER_THUMB,  # noqa: F401
                              NO_TISSUE, SKETCH_TIP, TILE_CELL, cluster_tiles, member_job, page_job, shown,
                              sketch_start_problem)
from .image_view import ImageView, array_to_pixmap
from .messages import show_error
from .preferences import config_dir
from .workers import Job, LatestOnly

log = logging.getLogger(__name__)

PAGE_SIZE = 24
MAX_K = 30
AUTO = 1  # the k spin box's "auto" value (k itself starts at 2)
MEMBERS_STRETCH, PREVIEWS_STRETCH = 3, 1  # the member list gets most of the page's height
PREVIEW_MIN = (40, 48)  # (h, w): small, so the dock's width never depends on what is shown
SKETCH_TEXT = {False: "Start sketch from its coarse mask", True: "Start class sketch from its coarse label map"}


# --- jobs (Qt-free functions run by workers) -----------------------------------------------------------
def clustering_job(dataset: Optional[str], k: Optional[int], seed: int, cache_root: Path):
    """``fn(progress, cancel) -> (ClusterResult, [tile image per cluster])``; None = the bundled sample."""
    def run(progress: ProgressFn, cancel: CancelToken):
        if dataset is None:
            folder = bundled_sample_dataset(
                cache_root, lambda d, t, m: progress(d, t, f"preparing the bundled sample {m}".strip()), cancel)
        else:
            folder = Path(dataset)
        result = cluster_dataset(folder, k=k, seed=seed, progress=progress, cancel=cancel,
                                 cache_dir=cache_root / "clusters")
        return result, cluster_tiles(result, progress, cancel)
    return run


class ClusterBrowser(QWidget):
    """A dock widget: a grid of clusters, and a page per cluster to pick one mask from."""

    underlayRequested = Signal(object)  # np.ndarray: HxW uint8 fine mask or HxWx3 uint8 RGB
    sketchRequested = Signal(object)  # np.ndarray: HxW uint8 0/255 coarse mask
    classSketchRequested = Signal(object, object)  # HxW uint8 coarse label map, its ClassTable
    styleRequested = Signal(list)  # str paths of real RGB patches: the RGB stage's stain reference
    statusMessage = Signal(str)
    datasetChanged = Signal(object)  # str: a folder the user chose here clustered fine (save it as a preference)
    clustered = Signal(object)  # the ClusterResult now shown
    busyChanged = Signal(bool)

    def __init__(self, parent: Optional[QWidget] = None, seed: int = 0):
        super().__init__(parent)
        self.seed = seed
        self._dataset: Optional[str] = None  # what is shown or being clustered; None = the bundled sample
        self._result: Optional[ClusterResult] = None
        self._result_dataset: Optional[str] = None
        self._job: Optional[Job] = None
        self._cluster = -1
        self._page = 0
        self._members: list[str] = []
        self._images: dict[str, np.ndarray] = {}  # full-size images of the selected member
        self._images_stem: Optional[str] = None
        self._images_classes = None  # their class table when they hold label maps
        self._pending_user_choice = False  # the next clustering is of a folder chosen in the dialog

        self._pages = LatestOnly(self)
        self._pages.finished.connect(self._on_page_loaded)
        self._pages.failed.connect(lambda m: self._error("Cannot show the cluster's masks", m))
        self._member_loader = LatestOnly(self)
        self._member_loader.finished.connect(self._on_member_loaded)
        self._member_loader.failed.connect(lambda m: self._error("Cannot open the mask", m))

        self._build()
        self._show_dataset_name()
        self._set_busy(False)

    # --- layout ---------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.dataset_label = QLabel()
        self.dataset_label.setWordWrap(True)
        self.dataset_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.choose_button = QPushButton("Choose…")
        self.choose_button.setToolTip("Choose a folder written by 'priorpath prepare'")
        self.choose_button.clicked.connect(self.choose_dataset)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(AUTO, MAX_K)
        self.k_spin.setSpecialValueText("auto")
        self.k_spin.setPrefix("k = ")
        self.k_spin.setToolTip("Number of clusters; auto picks the k with the best silhouette score")
        self.recluster_button = QPushButton("Recluster")
        self.recluster_button.clicked.connect(lambda: self.recluster(self.k_value()))
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)

        top = QGridLayout()
        top.addWidget(self.dataset_label, 0, 0, 1, 2)
        top.addWidget(self.choose_button, 0, 2)
        top.addWidget(self.k_spin, 1, 0)
        top.addWidget(self.recluster_button, 1, 1, 1, 2)
        top.addWidget(self.progress_bar, 2, 0, 1, 2)
        top.addWidget(self.cancel_button, 2, 2)

        # overview: one tile per cluster
        self.summary_label = QLabel("No clusters yet")
        self.summary_label.setWordWrap(True)
        self.tiles = self._icon_list(QSize(TILE_CELL[1], EXEMPLARS_PER_TILE * (TILE_CELL[0] + 2)))
        # one click opens a cluster (a tile has nothing else to do); Enter works from the keyboard
        self.tiles.itemActivated.connect(lambda item: self.open_cluster(item.data(Qt.ItemDataRole.UserRole)))
        self.tiles.itemClicked.connect(lambda item: self.open_cluster(item.data(Qt.ItemDataRole.UserRole)))
        self.tiles.setToolTip("Click a cluster to page through its masks")
        overview = QWidget()
        lay = QVBoxLayout(overview)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.summary_label)
        lay.addWidget(self.tiles, 1)

        # one cluster, paged
        self.cluster_label = QLabel()
        self.back_button = QPushButton("Back")
        self.back_button.clicked.connect(self.show_overview)
        self.members_list = self._icon_list(QSize(MEMBER_THUMB[1], MEMBER_THUMB[0]))
        self.members_list.currentItemChanged.connect(self._on_member_selected)
        self.prev_button = QPushButton("Prev")
        self.prev_button.clicked.connect(lambda: self.show_page(self._page - 1))
        self.next_button = QPushButton("Next")
        self.next_button.clicked.connect(lambda: self.show_page(self._page + 1))
        self.page_label = QLabel()
        self.page_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # room for any page count, so the text never changes the dock's width
        self.page_label.setMinimumWidth(self.page_label.fontMetrics().horizontalAdvance("page 999 of 999"))
        self.page_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # the whole image, scaled to fit with its aspect kept; the Ignored policy keeps the images' sizes out of
        # the dock's size hints, so opening a cluster never widens the dock
        self.preview_views = {kind: ImageView() for kind in ("fine", "coarse", "rgb")}
        for view in self.preview_views.values():
            view.setMinimumSize(QSize(PREVIEW_MIN[1], PREVIEW_MIN[0]))
            view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.stem_label = QLabel()
        self.stem_label.setWordWrap(True)
        self.stem_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.cluster_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.use_mask_button = QPushButton("Use mask as underlay")
        self.use_mask_button.clicked.connect(self.use_mask_as_underlay)
        self.use_rgb_button = QPushButton("Use RGB as underlay")
        self.use_rgb_button.clicked.connect(self.use_rgb_as_underlay)
        self.sketch_button = QPushButton(SKETCH_TEXT[False])
        self.sketch_button.setToolTip(SKETCH_TIP)
        self.sketch_button.clicked.connect(self.start_sketch)
        self.style_cluster_button = QPushButton("Stain style: this cluster")
        self.style_cluster_button.setToolTip("the RGB stage copies (or matches) the stain of this cluster's H&E patches")
        self.style_cluster_button.clicked.connect(self.style_from_cluster)
        self.style_slide_button = QPushButton("Stain style: this slide")
        self.style_slide_button.setToolTip("the RGB stage takes its stain from every patch of the selected patch's slide")
        self.style_slide_button.clicked.connect(self.style_from_slide)

        head = QHBoxLayout()
        head.addWidget(self.back_button)
        head.addWidget(self.cluster_label, 1)
        paging = QHBoxLayout()
        paging.addWidget(self.prev_button)
        paging.addWidget(self.page_label, 1)
        paging.addWidget(self.next_button)
        previews = QGridLayout()
        for col, (kind, caption) in enumerate((("fine", "Fine"), ("coarse", "Coarse"), ("rgb", "RGB"))):
            previews.addWidget(QLabel(caption, alignment=Qt.AlignmentFlag.AlignCenter), 0, col)
            previews.addWidget(self.preview_views[kind], 1, col)
            previews.setColumnStretch(col, 1)
        previews.setRowStretch(1, 1)
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(head)
        lay.addWidget(self.members_list, MEMBERS_STRETCH)
        lay.addLayout(paging)
        lay.addWidget(self.stem_label)
        lay.addLayout(previews, PREVIEWS_STRETCH)
        underlays = QHBoxLayout()  # side by side: the height goes to the member list
        underlays.addWidget(self.use_mask_button)
        underlays.addWidget(self.use_rgb_button)
        lay.addLayout(underlays)
        lay.addWidget(self.sketch_button)
        styles = QHBoxLayout()
        styles.addWidget(self.style_cluster_button)
        styles.addWidget(self.style_slide_button)
        lay.addLayout(styles)

        self.stack = QStackedWidget()
        self.stack.addWidget(overview)
        self.stack.addWidget(page)
        root = QVBoxLayout(self)
        root.addLayout(top)
        root.addWidget(self.stack, 1)
        self._enable_member_buttons()

    @staticmethod
    def _icon_list(icon_size: QSize) -> QListWidget:
        view = QListWidget()
        view.setViewMode(QListView.ViewMode.IconMode)
        view.setIconSize(icon_size)
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setMovement(QListView.Movement.Static)
        view.setWordWrap(True)
        view.setSpacing(4)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # the dock's width must not follow the thumbnails: the list wraps them to whatever width it gets
        view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        return view

    # --- public API -----------------------------------------------------------------------------------------
    def result(self) -> Optional[ClusterResult]:
        return self._result

    def dataset(self) -> Optional[str]:
        return self._dataset

    def is_busy(self) -> bool:
        return self._job is not None

    def k_value(self) -> Optional[int]:
        """The k chosen in the spin box; None = auto."""
        return None if self.k_spin.value() == AUTO else self.k_spin.value()

    def set_dataset(self, path: Optional[str]) -> None:
        """Cluster another prepared folder (None = the bundled sample) with the k now chosen."""
        self._dataset = str(path) if path else None
        self._show_dataset_name()
        self.recluster(self.k_value())

    def recluster(self, k: Optional[int]) -> None:
        """Start clustering the current dataset in a worker; a run in progress is superseded."""
        self.k_spin.setValue(AUTO if k is None else max(2, min(MAX_K, int(k))))
        if self._job is not None:
            self._job.cancel()  # its late signals are ignored: they come from a job that is no longer ours
        job = Job(clustering_job(self._dataset, k, self.seed, config_dir() / "cache"), "clustering", self)
        job.dataset = self._dataset
        job.user_choice, self._pending_user_choice = self._pending_user_choice, False
        job.progress.connect(lambda d, t, m, job=job: self._on_progress(job, d, t, m))
        job.finished.connect(lambda r, job=job: self._on_clustered(job, r))
        job.failed.connect(lambda m, job=job: self._on_failed(job, m))
        job.cancelled.connect(lambda job=job: self._on_cancelled(job))
        self._job = job
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("starting…")
        self._set_busy(True)
        self.statusMessage.emit(f"clustering {self._dataset_name(self._dataset)}…")
        job.start()

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def choose_dataset(self) -> None:
        """Ask for a prepared folder (non-blocking dialog) and cluster it."""
        dialog = QFileDialog(self, "Choose a prepared dataset folder", self._dataset or str(Path.home()))
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.fileSelected.connect(self._on_folder_chosen)
        dialog.open()

    def open_cluster(self, cluster: int) -> None:
        """Show one cluster's masks, nearest its centroid first, from the first page."""
        if self._result is None or not 0 <= cluster < self._result.k:
            return
        if self.stack.currentIndex() == 1 and self._cluster == cluster:
            return  # already open (a click and an activation can both arrive for one click)
        self._cluster = cluster
        self._members = self._result.members(cluster)
        self.cluster_label.setText(f"Cluster {cluster + 1} · {len(self._members)} masks")
        self.stack.setCurrentIndex(1)
        self.show_page(0)

    def show_overview(self) -> None:
        self._pages.cancel()
        self._member_loader.cancel()
        self._cluster = -1
        self.stack.setCurrentIndex(0)

    def current_cluster(self) -> int:
        """The open cluster, or -1 on the overview."""
        return self._cluster

    def current_page(self) -> int:
        return self._page

    def page_count(self) -> int:
        return max(1, math.ceil(len(self._members) / PAGE_SIZE))

    def page_stems(self) -> list[str]:
        """Stems shown on the current page (once its thumbnails have loaded)."""
        return [self.members_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.members_list.count())]

    def show_page(self, page: int) -> None:
        if self._result is None or self._cluster < 0:
            return
        page = max(0, min(self.page_count() - 1, page))
        self._page = page
        stems = self._members[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
        self.page_label.setText(f"page {page + 1} of {self.page_count()}")
        self.prev_button.setEnabled(page > 0)
        self.next_button.setEnabled(page < self.page_count() - 1)
        self.members_list.clear()
        self._clear_member()
        self._pages.submit(page_job(self._result, self._cluster, page, stems), "cluster page")

    def selected_stem(self) -> Optional[str]:
        item = self.members_list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def member_loaded(self) -> bool:
        """Whether the selected mask's images are loaded (the action buttons work)."""
        return self._images_stem is not None and self._images_stem == self.selected_stem()

    def use_mask_as_underlay(self) -> None:
        """The fine mask, or for a label map clustering the fine label map in its class colours."""
        if self.member_loaded():
            self.underlayRequested.emit(np.array(shown(self._result, self._images, "fine")))
            what = "label map" if "labels" in self._images else "fine mask"
            self.statusMessage.emit(f"underlay: {what} {self._images_stem}")

    def use_rgb_as_underlay(self) -> None:
        if self.member_loaded() and "rgb" in self._images:
            self.underlayRequested.emit(self._images["rgb"].copy())
            self.statusMessage.emit(f"underlay: RGB patch {self._images_stem}")

    def style_from_cluster(self) -> None:
        """Ask for the open cluster's RGB patches as the stain reference (grouped by slide by the engine)."""
        if self._result is None or self._cluster < 0:
            return
        paths = [str(self._result.path(s, "rgb")) for s in self._members]
        self.styleRequested.emit(paths)
        self.statusMessage.emit(f"stain style: cluster {self._cluster + 1} ({len(paths)} patches)")

    def style_from_slide(self) -> None:
        """Ask for every patch of the selected patch's source slide as the stain reference."""
        stem = self.selected_stem()
        if self._result is None or stem is None:
            self.statusMessage.emit("select a patch first: its slide becomes the stain style")
            return
        slide = stem.rsplit("_x", 1)[0]
        paths = [str(self._result.path(s, "rgb")) for s in self._result.stems if s.rsplit("_x", 1)[0] == slide]
        self.styleRequested.emit(paths)
        self.statusMessage.emit(f"stain style: slide {slide} ({len(paths)} patches)")

    def start_sketch(self) -> None:
        if not self.member_loaded():
            return
        problem = sketch_start_problem(self._images["coarse"])
        if problem is not None:  # the button is disabled then; a call from code gets the reason
            self.statusMessage.emit(problem)
        elif "coarse_labels" in self._images:
            self.classSketchRequested.emit(self._images["coarse_labels"].copy(), self._images_classes)
            self.statusMessage.emit(f"class sketch ({self._images_classes.name}) from the coarse label map of "
                                    f"{self._images_stem}")
        else:
            self.sketchRequested.emit(self._images["coarse"].copy())
            self.statusMessage.emit(f"new sketch from the coarse mask of {self._images_stem}")

    # --- clustering results ---------------------------------------------------------------------------------
    def _on_folder_chosen(self, path: str) -> None:
        if path:
            self._pending_user_choice = True
            self.set_dataset(path)

    def _on_progress(self, job: Job, done: int, total: int, message: str) -> None:
        if job is not self._job:
            return
        self.progress_bar.setRange(0, max(0, total))
        if total:
            self.progress_bar.setValue(min(done, total))
        self.progress_bar.setFormat(f"%p% {message}" if total else message)

    def _on_clustered(self, job: Job, payload) -> None:
        job.deleteLater()
        if job is not self._job:
            return
        self._job = None
        self._set_busy(False)
        result, tiles = payload
        self._result = result
        self._result_dataset = job.dataset
        self._fill_tiles(result, tiles)
        self.show_overview()
        how = "auto, best silhouette" if result.silhouette else "chosen"
        score = f" {result.silhouette[result.k]:.2f}" if result.k in result.silhouette else ""
        cached = " (cached)" if result.from_cache else ""
        classes = f", by their label maps ({', '.join(result.classes.names)})" if result.has_labels else ""
        self.summary_label.setText(f"{len(result.stems)} masks in {result.k} clusters "
                                   f"(k {how}{score}){cached}{classes}")
        self.sketch_button.setText(SKETCH_TEXT[result.has_labels])
        self.statusMessage.emit(f"clustered {len(result.stems)} masks of "
                                f"{self._dataset_name(job.dataset)} into {result.k} clusters")
        if job.user_choice:
            self.datasetChanged.emit(job.dataset)
        self.clustered.emit(result)

    def _on_failed(self, job: Job, message: str) -> None:
        job.deleteLater()
        if job is not self._job:
            return
        self._job = None
        self._set_busy(False)
        if self._result is not None and job.dataset != self._result_dataset:
            # a bad choice does not replace the dataset that works
            self._dataset = self._result_dataset
            self._show_dataset_name()
        elif self._result is None:
            self.summary_label.setText("No clusters: " + message)
        self._error("Cannot cluster the dataset", message)

    def _on_cancelled(self, job: Job) -> None:
        job.deleteLater()
        if job is not self._job:
            return
        self._job = None
        self._set_busy(False)
        self.statusMessage.emit("clustering cancelled")

    def _fill_tiles(self, result: ClusterResult, tiles: list[np.ndarray]) -> None:
        self.tiles.clear()
        for c, (count, tile) in enumerate(zip(result.counts, tiles)):
            item = QListWidgetItem(QIcon(array_to_pixmap(tile)), f"Cluster {c + 1} · {count} masks")
            item.setData(Qt.ItemDataRole.UserRole, c)
            item.setToolTip(f"{count} masks; exemplars: " + ", ".join(result.members(c)[:EXEMPLARS_PER_TILE]))
            self.tiles.addItem(item)

    # --- one cluster ----------------------------------------------------------------------------------------
    def _on_page_loaded(self, payload) -> None:
        result, cluster, page, thumbs = payload
        if result is not self._result or cluster != self._cluster or page != self._page:
            return
        self.members_list.clear()
        for stem, thumb in thumbs:
            item = QListWidgetItem(QIcon(array_to_pixmap(thumb)), "")
            item.setData(Qt.ItemDataRole.UserRole, stem)
            item.setToolTip(stem)
            self.members_list.addItem(item)
        if self.members_list.count():
            self.members_list.setCurrentRow(0)

    def _on_member_selected(self, current: Optional[QListWidgetItem], _previous=None) -> None:
        self._clear_member()
        if current is None or self._result is None:
            return
        stem = current.data(Qt.ItemDataRole.UserRole)
        self.stem_label.setText(stem)
        self._member_loader.submit(member_job(self._result, stem), "cluster member")

    def _on_member_loaded(self, payload) -> None:
        stem, images, previews, classes = payload
        if stem != self.selected_stem():
            return
        self._images, self._images_stem, self._images_classes = images, stem, classes
        for kind, view in self.preview_views.items():
            view.set_placeholder("none")
            view.set_image(previews.get(kind))
        self._enable_member_buttons()

    def _clear_member(self) -> None:
        self._images, self._images_stem, self._images_classes = {}, None, None
        for view in self.preview_views.values():
            view.set_placeholder("")
            view.clear()
        self.stem_label.clear()
        self._enable_member_buttons()

    def _enable_member_buttons(self) -> None:
        loaded = self.member_loaded()
        self.use_mask_button.setEnabled(loaded)
        problem = sketch_start_problem(self._images["coarse"]) if loaded else None
        self.sketch_button.setEnabled(loaded and problem is None)
        self.sketch_button.setToolTip(problem or (LABEL_SKETCH_TIP if "coarse_labels" in self._images else SKETCH_TIP))
        self.use_rgb_button.setEnabled(loaded and "rgb" in self._images)

    # --- helpers --------------------------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if not busy:
            self.progress_bar.reset()
        self.busyChanged.emit(busy)

    def _show_dataset_name(self) -> None:
        self.dataset_label.setText(f"Dataset: {self._dataset_name(self._dataset)}")
        self.dataset_label.setToolTip(self._dataset or "the bundled H&E sample, prepared at 256x512")

    @staticmethod
    def _dataset_name(dataset: Optional[str]) -> str:
        return Path(dataset).name or dataset if dataset else "bundled H&E sample"

    def _error(self, title: str, message: str) -> None:
        self.statusMessage.emit(f"{title}: {message}")
        show_error(self, title, message)
