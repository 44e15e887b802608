"""The house rules of DESIGN.md, read from the tree: layers as folders, who may import whom,
one error root, nothing heavy at `import podmagic`."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import podmagic
from podmagic.errors import PodmagicError

PKG = Path(podmagic.__file__).parent
FRONT_END_LIBS = ("IPython", "ipywidgets", "argparse", "jupyter_server", "tornado")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path) -> set[str]:
    """Every module an import statement in `path` names (absolute; relative ones resolved)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the house uses absolute imports)"
            found.add(node.module or "")
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_tree_shows_the_layers():
    for folder in ("spec", "plan", "run", "backends", "backends/ssh", "backends/runpod", "ui", "ui/serverext",
                   "testing", "testing/sim"):
        init = PKG / folder / "__init__.py"
        assert init.is_file(), folder
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc, f"{folder}/__init__.py must say what the layer may import"
    top = [p.name for p in PKG.glob("*.py")]
    assert len(top) <= 12, top


@pytest.mark.parametrize("module,path", sorted(modules().items()))
def test_imports_follow_the_layers(module, path):
    names = imports(path)
    own = layer(module)
    if own != "ui" and module != "podmagic":
        bad = [n for n in names if n.startswith("podmagic.ui") or n.split(".")[0] in FRONT_END_LIBS]
        assert not bad, f"{module} imports front-end code {bad}"
    if module == "podmagic":
        assert all(n.startswith("podmagic.ui") or not n.startswith("podmagic.") for n in names if "ui" in n)
    if own in ("spec", "plan"):
        bad = [n for n in names if n.startswith(("podmagic.run", "podmagic.backends", "podmagic.testing"))]
        assert not bad, f"{module} (pure layer) imports {bad}"
    if own == "backends":
        bad = [n for n in names if n.startswith(("podmagic.run", "podmagic.ui"))]
        assert not bad, f"{module} (backend) imports {bad}"
    if not module.startswith("podmagic.backends.runpod"):
        assert not any(n == "runpod" or n.startswith("runpod.") for n in names), f"{module} imports runpod"
    if own != "testing":
        assert not any(n.startswith("podmagic.testing") for n in names), f"{module} imports test doubles"


def test_every_exception_is_under_the_one_root():
    for info in pkgutil.walk_packages([str(PKG)], prefix="podmagic."):
        if info.name.startswith("podmagic.labextension"):
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == mod.__name__:
                assert issubclass(obj, PodmagicError), f"{info.name}.{name} is not a PodmagicError"


def test_import_podmagic_is_light():
    code = ("import sys, podmagic; heavy = [m for m in ('ipywidgets', 'paramiko', 'runpod', 'IPython', 'pandas', "
            "'httpx', 'yaml') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_run_directories_are_committed():
    root = PKG.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert not [line for line in tracked.splitlines() if "artifacts/runpod/" in line]
