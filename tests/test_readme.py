"""The README's module map names every module of the package, and only files that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mapped() -> set:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| concept | module |") :]
    table = table[: table.index("\n\n")]
    return set(re.findall(r"`(captum_fv/[^`]+)`", table))


def test_module_map_matches_the_files():
    mapped = _mapped()
    for path in mapped:
        assert (ROOT / path).exists(), f"README maps {path}, which does not exist"
    packages = {p for p in mapped if p.endswith("/")}
    modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "captum_fv").rglob("*.py")]
    unmapped = [
        m
        for m in modules
        if m not in mapped
        and not any(m.startswith(pkg) for pkg in packages)
        and not m.endswith(("__init__.py", "__main__.py"))
    ]
    assert not unmapped, f"modules missing from the README's module map: {unmapped}"
