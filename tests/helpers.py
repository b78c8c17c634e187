"""Plain test helpers (importable as ``helpers``): a very small U-Net config, a subprocess runner, file digests.

They live here rather than in conftest.py because two conftest.py files (tests/ and tests/browser/) would both be
imported under the module name ``conftest``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A U-Net of ~0.1M parameters (levels 16, 8): a training step takes milliseconds on one CPU thread.
MICRO_UNET = {"base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1, "attn_levels": [1]}


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to check that a refused command changed nothing)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: this checkout importable, one CPU thread (fast and deterministic)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_sr3(*args: str, cwd: Path | None = None, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """``python -m sr3_edu ARGS`` in a child process; returns the completed process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "sr3_edu", *args],
        cwd=cwd or ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )
