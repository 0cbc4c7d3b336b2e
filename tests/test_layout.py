"""The four packages resolve inside this repository and obey the import direction; tests write nothing into it."""
import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("perception", "backbones", "heads", "data")
LEAVES = ("backbones", "heads", "data")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_resolves_inside_the_repo(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent == REPO / name, (
        f"{name} resolves to {module.__file__}, not {REPO / name}: something shadows it"
    )


def test_no_init_files_under_tests():
    assert not list((REPO / "tests").rglob("__init__.py")), "tests/ must hold no __init__.py"


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_never_import_perception_or_each_other(leaf):
    forbidden = {"perception", *LEAVES} - {leaf}
    for path in (REPO / leaf).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            bad = forbidden.intersection(roots)
            assert not bad, f"{path.relative_to(REPO)} imports {bad}: leaves import only torch, numpy, ..."


def test_check_layout_refuses_a_shadowing_data_folder(tmp_path, monkeypatch):
    """A ./data package in the working directory is caught with a message naming it."""
    import sys

    from perception._layout import check_layout

    fake = tmp_path / "data"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "data", raising=False)
    importlib.invalidate_caches()
    with pytest.raises(ImportError, match=r"'data' resolves to .*shadows it"):
        check_layout()


def test_hypothesis_writes_outside_the_repository():
    from hypothesis import settings
    from hypothesis.configuration import storage_directory

    assert settings.default.database is None
    assert REPO not in storage_directory("constants", intent_to_write=False).path.resolve().parents


def test_nothing_points_outside_the_repository():
    """Contracts live in the docstrings of the modules that own them, not in a file elsewhere."""
    outside = "DESIGN" + ".md"  # spelled so that this file does not match itself
    for path in [REPO / "README.md", REPO / "pyproject.toml", *(p for d in (*PACKAGES, "scripts", "tests")
                                                                 for p in (REPO / d).rglob("*.py"))]:
        assert outside not in path.read_text(), f"{path.relative_to(REPO)} refers to {outside}"
