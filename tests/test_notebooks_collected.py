"""The notebooks are tested by nbval: every one must be collected, committed executed, and free of errors.

nbval (with ``--nbval-lax``, see pyproject.toml) re-runs each notebook and compares the cells marked
``# NBVAL_CHECK_OUTPUT`` with their committed outputs. That only protects a notebook pytest actually
collects, and only if its committed outputs come from a clean top-to-bottom run; these tests check both.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb"))
MAX_BYTES = 1_500_000


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


def test_pyproject_runs_notebooks_by_default():
    """A plain `pytest` must reach notebooks/ and run them through nbval in lax mode."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib

        ini = tomllib.loads(text)["tool"]["pytest"]["ini_options"]
        testpaths, addopts = ini.get("testpaths", []), ini.get("addopts", "")
    except ModuleNotFoundError:  # Python 3.10: read the two keys directly
        testpaths = re.findall(r'"([^"]+)"', re.search(r"testpaths\s*=\s*\[([^\]]*)\]", text).group(1))
        addopts = re.search(r'addopts\s*=\s*"([^"]*)"', text).group(1)
    assert "notebooks" in testpaths, (
        f"pyproject.toml [tool.pytest.ini_options] testpaths = {testpaths}: add 'notebooks'"
    )
    for option in ("--nbval-lax", "--nbval-sanitize-with notebooks/sanitize.cfg"):
        assert option in addopts, f"pyproject.toml addopts lacks {option!r} (got {addopts!r})"
    assert (NOTEBOOK_DIR / "sanitize.cfg").is_file()


@pytest.mark.slow  # a pytest subprocess: a few seconds
def test_every_notebook_is_collected_by_nbval():
    """`pytest --collect-only notebooks/` (the project's own configuration) must list a cell of every notebook."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "notebooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"collecting notebooks/ failed:\n{proc.stdout}\n{proc.stderr}"
    collected = {line.split("::", 1)[0] for line in proc.stdout.splitlines() if ".ipynb::" in line}
    expected = {p.relative_to(ROOT).as_posix() for p in NOTEBOOKS}
    missing = sorted(expected - collected)
    assert not missing, (
        f"nbval would not run {missing}: is nbval installed, and does a conftest.py, --ignore or "
        f"collect_ignore exclude them?\n{proc.stdout[-3000:]}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_executed(path: Path):
    """Outputs present, from one clean top-to-bottom run, without errors, with a kernel spec nbval can use."""
    nb = _load(path)
    kernelspec = nb.get("metadata", {}).get("kernelspec", {})
    assert kernelspec.get("name") and kernelspec.get("language") == "python", (
        f"{path.name}: missing a Python kernelspec"
    )

    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code, f"{path.name} has no code cells"
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, (
        f"{path.name}: some code cells were never run; execute with `jupyter nbconvert --execute`"
    )
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..{len(code)}; re-run it top to bottom in a fresh kernel"
    )
    assert any(c["outputs"] for c in code), f"{path.name}: committed without outputs"
    for i, cell in enumerate(code):
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"{path.name}, code cell {i + 1}: committed with an error output"
            if out["output_type"] == "stream" and out.get("name") == "stderr":
                assert "Traceback" not in "".join(out["text"]), f"{path.name}, code cell {i + 1}: traceback on stderr"
        if "NBVAL_CHECK_OUTPUT" in "".join(cell["source"]):
            assert cell["outputs"], f"{path.name}, code cell {i + 1}: NBVAL_CHECK_OUTPUT cell without outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_follows_conventions(path: Path):
    """Opens with what the reader will learn and a Japanese summary; small enough to review."""
    nb = _load(path)
    size = path.stat().st_size
    assert size < MAX_BYTES, (
        f"{path.name} is {size / 1e6:.2f} MB; keep notebooks under {MAX_BYTES / 1e6} MB (smaller figures)"
    )
    first = nb["cells"][0]
    head = "".join(first["source"])
    assert first["cell_type"] == "markdown" and head.startswith("# "), (
        f"{path.name}: first cell must be a markdown title"
    )
    assert "what you will learn" in head.lower(), f"{path.name}: first cell lacks 'What you will learn'"
    assert "概要" in head, f"{path.name}: first cell lacks the Japanese summary (概要)"
    assert any("NBVAL_CHECK_OUTPUT" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"), (
        f"{path.name}: no cell is marked # NBVAL_CHECK_OUTPUT, so nbval checks nothing but errors"
    )


def test_notebook_07s_committed_upscale_help_is_todays():
    # the cell's output is not compared by nbval (NBVAL_IGNORE_OUTPUT), so a changed option would leave it stale
    cells = _load(NOTEBOOK_DIR / "07_own_data_and_gpu.ipynb")["cells"]
    cell = next(c for c in cells if '"upscale", "--help"' in "".join(c["source"]))
    committed = "".join(cell["outputs"][0]["text"])
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "80", "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"}
    cmd = [sys.executable, "-m", "sr3_edu", "upscale", "--help"]
    today = subprocess.run(cmd, cwd=ROOT, capture_output=True, encoding="utf-8", check=True, env=env).stdout
    assert committed == today + "\n", "rerun notebook 07's `upscale --help` cell and commit its output"
