"""Every method folder honours the contract (CONTRIBUTING.md): imports cleanly, registers under its
folder name, ships config.yaml (smoke + paper presets that validate), paper.yaml and README.md."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import methods
from benchmarks.api import BASELINES, METHODS, Method
from benchmarks.config import resolve
from benchmarks.runner import plan
from benchmarks.tables import load_paper

FOLDERS = sorted(m.name for m in pkgutil.iter_modules(methods.__path__) if m.ispkg)


def test_all_eleven_papers_have_a_method_folder():
    assert {"deepcache"} <= set(FOLDERS)


@pytest.mark.parametrize("folder", FOLDERS)
def test_method_folder_contract(folder):
    importlib.import_module(f"methods.{folder}.method")          # strict: no import error hidden
    cls = METHODS.get(folder)
    assert issubclass(cls, Method) and cls.name == folder and isinstance(cls.version, int)
    assert cls.paper.get("title") and "arxiv" in cls.paper
    root = Path(methods.__file__).parent / folder
    for f in ("config.yaml", "paper.yaml", "README.md", "__init__.py"):
        assert (root / f).exists(), f"methods/{folder}/{f} missing"
    presets = cls.presets()
    assert "smoke" in presets and "paper" in presets, presets
    for preset in presets:
        p = plan(folder, preset)
        names = [v.name for v in p.variants]
        assert names and len(set(names)) == len(names)
        for v in p.variants:
            if v.kind == "baseline":
                BASELINES.get(v.impl)
    spec = load_paper(folder)
    ids = [r["id"] for r in spec["rows"]]
    assert len(ids) == len(set(ids)), "paper.yaml row ids must be unique"
    for r in spec["rows"]:
        assert r["match"].get("preset") in presets or r.get("needs"), \
            f"row {r['id']} matches preset {r['match'].get('preset')!r} that does not exist and says no 'needs'"
