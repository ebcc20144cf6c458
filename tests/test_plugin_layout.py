"""Every plugin folder (and the template third parties copy) has the same shape."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(p for p in (ROOT / "plugins").iterdir() if p.is_dir()) + \
    [ROOT / "docs" / "template-transport"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_plugin_folder_shape(folder: Path) -> None:
    meta = tomllib.loads((folder / "pyproject.toml").read_text())
    assert (folder / "README.md").is_file()
    assert any((folder / "tests").glob("test_*.py")), "tests/ with at least one test"
    entry = meta["project"]["entry-points"]["shoal.plugins"]
    assert len(entry) == 1, "one entry point per distribution"
    package = next(iter(entry.values())).split(".")[0].split(":")[0]
    assert (folder / "src" / package / "py.typed").is_file()
    assert "py.typed" in meta["tool"]["setuptools"]["package-data"][package]
