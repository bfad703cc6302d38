"""Project-wide rules: trainer stays Qt-free, the bundled sample is credited and runs."""
from __future__ import annotations

import ast
from pathlib import Path

from trainer.data.prepare import PrepareSettings, prepare, read_manifest

from .conftest import REPO, SAMPLE

QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy", "priorpath_desktop")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_trainer_never_imports_qt():
    files = list((REPO / "trainer").rglob("*.py"))
    assert len(files) > 5
    offenders = {str(f.relative_to(REPO)): sorted(n for n in _imports(f) if n.split(".")[0] in QT_MODULES)
                 for f in files}
    assert {f: n for f, n in offenders.items() if n} == {}


def test_every_bundled_sample_file_is_credited():
    credits = (SAMPLE / "SOURCES.md").read_text()
    files = [p for p in SAMPLE.rglob("*") if p.is_file() and p.name != "SOURCES.md"]
    assert files
    for p in files:
        stem = p.name.split("___")[0] + "___" if "___" in p.name else p.name
        assert stem in credits or p.name in credits, f"{p.name} is not credited in SOURCES.md"
    assert sum(p.stat().st_size for p in files) < 8 * 2**20


def test_bundled_sample_prepares(tmp_path):
    result = prepare([SAMPLE / "he"], tmp_path, PrepareSettings(stain="he"))
    assert result.kept >= 15 and len(read_manifest(tmp_path)) == result.kept


def test_written_docs_stay_readable_in_size():
    """Prose pages are written by people and scripts; one runaway text replacement once made a 5 MB page."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "resources").rglob("*.md"))]
    too_big = [f"{p.relative_to(REPO)}: {p.stat().st_size} B" for p in pages if p.stat().st_size > 200_000]
    assert not too_big, too_big
