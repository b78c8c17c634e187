"""A fresh JupyterLab server and a headless Chromium for the browser tests.

The server runs on 127.0.0.1 at a free port, without token or password, over a temporary copy of notebooks/, with its
own Jupyter config, data, runtime and settings folders: the user's JupyterLab setup neither helps nor breaks the test,
and nothing is fetched from the network (no news, no update check, no extension catalogue). The kernel is the native
``python3`` kernel of the Python that runs pytest, with this checkout on ``PYTHONPATH``.

Chromium is Debian's (``/usr/bin/chromium``, or ``$SR3_EDU_CHROMIUM``), driven by Playwright's Python package; the
test never downloads a browser. Without Chromium or Playwright the browser tests are skipped — unless
``SR3_EDU_REQUIRE_BROWSER=1`` (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# User settings of the fresh JupyterLab: no news or update pop-ups, and every cell kept in the page
# (JupyterLab otherwise renders only the cells in view, and the test counts and reads them all).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    # autoStartDefaultKernel: never ask "Select Kernel" for a notebook whose kernelspec exists
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
}
LAB_CONFIG = {
    "LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "extension_manager": "readonly",
    }
}


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install playwright; no browser download needed)"
    path = chromium_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        return f"no Chromium at {path} (apt-get install chromium, or point SR3_EDU_CHROMIUM at one)"
    return None


def chromium_path() -> Path:
    """Debian's Chromium, or the executable named by ``$SR3_EDU_CHROMIUM``."""
    return Path(os.environ.get("SR3_EDU_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium_launch() -> dict:
    """Keyword arguments for Playwright's ``chromium.launch``: Debian's Chromium, headless, no network chatter.

    Skips the test when Chromium or Playwright is missing, and fails it instead when ``SR3_EDU_REQUIRE_BROWSER=1``.
    """
    reason = _missing_browser()
    if reason:
        if os.environ.get("SR3_EDU_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SR3_EDU_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}", pytrace=False)
        pytest.skip(f"browser test skipped: {reason}")
    return {"executable_path": str(chromium_path()), "args": list(CHROMIUM_ARGS), "headless": True}


@dataclass
class LabServer:
    """A running JupyterLab: its base URL, the folder it serves and its log file."""

    url: str
    root_dir: Path
    log: Path
    process: subprocess.Popen

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(base: Path) -> dict[str, str]:
    """Environment of the server and its kernels: private Jupyter folders, this checkout importable."""
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": base / "settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "workspaces",
        "IPYTHONDIR": base / "ipython",
        "MPLCONFIGDIR": base / "matplotlib",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    (dirs["JUPYTER_CONFIG_DIR"] / "jupyter_lab_config.json").write_text(json.dumps(LAB_CONFIG, indent=1))
    for name, values in LAB_SETTINGS.items():
        path = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=1))
    env = dict(os.environ, **{k: str(v) for k, v in dirs.items()})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    # One torch thread in the kernel: on a busy CI runner, threads that wait on each other are far slower than one.
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_TOKEN", None)
    return env


def _stop(process: subprocess.Popen) -> None:
    """Stop the server we started, by its PID: SIGTERM (it shuts its kernels down), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def start_jupyterlab(root_dir: Path, base: Path, timeout: float = 90) -> LabServer:
    """Start ``jupyter lab`` serving ``root_dir`` and wait until its API answers; ``base`` holds its private folders."""
    base.mkdir(parents=True, exist_ok=True)
    env = _isolated_env(base)
    port = _free_port()
    log = base / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.terminals_enabled=False",
        # Containers and CI runners often run as root; the server is private to this test either way.
        "--ServerApp.allow_root=True",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd, cwd=root_dir, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = LabServer(url=f"http://127.0.0.1:{port}/", root_dir=root_dir, log=log, process=process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "api/status", timeout=5) as r:
                if r.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(
                f"jupyter lab did not answer on {server.url} within {timeout:.0f} s:\n{server.log_tail()}"
            )
        time.sleep(0.5)


@pytest.fixture
def jupyterlab(tmp_path, chromium_launch):
    """A fresh JupyterLab over a copy of notebooks/ (outputs stripped); stopped by its PID whatever happens."""
    import nbformat

    root_dir = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root_dir, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    # Start from a clean notebook: no committed outputs, execution counts or widget state to mistake for a new run.
    for path in root_dir.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
                cell.metadata.pop("execution", None)
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, path)
    server = start_jupyterlab(root_dir, tmp_path / "jupyter")
    try:
        yield server
    finally:
        _stop(server.process)
