"""Before launch, no pod, no cost: does the interpreter pin fit the project?

- a pin outside the project's `requires-python` is an error;
- a committed `.python-version` that disagrees with the pin is a warning;
- a minor pin ("3.13") on a canonical config or a sweep gets a note that an
  exact pin ("3.13.5") is the reproducible choice.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from podmagic.records import record
from podmagic.spec.jobspec import JobSpec


@record
class Note:
    severity: str  # "warning" | "note"
    message: str


def _requires_python(project: Path) -> str | None:
    path = project / "pyproject.toml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        import tomllib

        return tomllib.loads(text).get("project", {}).get("requires-python")
    except ImportError:  # Python 3.10
        match = re.search(r'^\s*requires-python\s*=\s*["\']([^"\']+)["\']', text, re.M)
        return match.group(1) if match else None
    except ValueError:
        return None


def _committed_python_version(project: Path) -> str | None:
    path = project / ".python-version"
    if not path.is_file():
        return None
    tracked = subprocess.run(["git", "-C", str(project), "ls-files", "--error-unmatch", ".python-version"],
                             capture_output=True)
    if tracked.returncode != 0:
        return None
    return path.read_text().strip().splitlines()[0] if path.read_text().strip() else None


def pin_fits(pin: str, requires: str) -> bool:
    """Whether `requires` (a PEP 440 specifier; InvalidSpecifier if it is none) admits the pin."""
    from packaging.specifiers import SpecifierSet  # only for a project that has a requires-python

    spec = SpecifierSet(requires)
    if pin.count(".") == 2:
        return spec.contains(pin, prereleases=True)
    return any(spec.contains(f"{pin}.{patch}", prereleases=True) for patch in range(0, 100))


def check(spec: JobSpec, project: Path, *, sweep: bool = False, canonical: bool = False) -> list[Note]:
    """Raises SpecError for a pin the project rejects; returns warnings and notes."""
    pin = spec.pod.python_version
    if not pin:
        return []
    notes: list[Note] = []
    requires = _requires_python(project)
    if requires:
        try:
            fits = pin_fits(pin, requires)
        except ValueError:  # packaging's InvalidSpecifier
            fits = True
            notes.append(Note("warning", f"pyproject.toml has an unreadable requires-python {requires!r}"))
        if not fits:
            raise spec.error("pod.python_version",
                             f"pod.python_version {pin!r} is outside the project's requires-python "
                             f"{requires!r} ({project / 'pyproject.toml'}); pick a version it allows")
    committed = _committed_python_version(project)
    if committed and committed != pin:
        notes.append(Note("warning", f"the committed .python-version says {committed!r} but pod.python_version "
                          f"pins {pin!r}; the pin wins on the pod — commit a matching .python-version or remove it"))
    if pin.count(".") == 1 and (sweep or canonical or "canonical" in (spec.name or "")):
        notes.append(Note("note", f"pod.python_version {pin!r} is a minor pin: uv picks the newest {pin}.x, "
                          "which can drift between runs; an exact pin (e.g. \"" + pin + ".5\") is the "
                          "reproducible choice for canonical runs and sweeps"))
    return notes
