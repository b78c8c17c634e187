"""Notebook 05 in a real JupyterLab: run every cell in headless Chromium, then drive the slider over t by keyboard.

What a reader does, checked the way a reader sees it: every code cell gets an execution count and none shows an error;
the ipywidgets slider renders; moving it with the arrow keys, Home and End changes both the images and the label that
names t and γ_t. The last picture of the live notebook is saved to figures/jupyterlab_slider.png for the README.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "05_refinement.ipynb"
SCREENSHOT = ROOT / "figures" / "jupyterlab_slider.png"
RUN_ALL_TIMEOUT_S = 480  # under a minute on an idle 2-core CPU; minutes on a loaded one

SLIDER = ".nb05-t-slider"
HANDLE = ".nb05-t-slider .noUi-handle"
LABEL = ".nb05-t-label"
VIEW = ".nb05-refinement-view"

# Done when no cell waits or runs ("[*]") and the kernel is idle, and either every code cell has a count or a cell
# failed (JupyterLab then drops the cells queued after it, so their prompts stay empty).
# A solution cell of an exercise keeps its input collapsed (hidden by default): it has no input prompt, so it is
# listed as null and its count is inferred from its neighbours'.
RUN_STATE_JS = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')]
    .map(c => c.querySelector('.jp-InputArea-prompt')?.textContent.trim() ?? null);
  const status = document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status');
  const errors = document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type*="error"]'
  ).length;
  return {prompts, status, errors};
}"""

ERROR_OUTPUTS_JS = """() => [...document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type*="error"]'
  )].map(e => ({mime: e.getAttribute('data-mime-type'), text: e.innerText}))"""


def _finished(state: dict) -> bool:
    prompts, status = state["prompts"], state["status"]
    shown = [p for p in prompts if p is not None]
    if status != "idle" or not shown or any("*" in p for p in shown):
        return False
    return all(re.fullmatch(r"\[\d+\]:", p) for p in shown) or state["errors"] > 0


def _wait_for_run_all(page, timeout_s: float) -> dict:
    """Poll the notebook until the run is over; returns the last state (prompts, kernel status, error count)."""
    deadline = time.monotonic() + timeout_s
    state = page.evaluate(RUN_STATE_JS)
    while not _finished(state):
        if time.monotonic() > deadline:
            raise AssertionError(f"Run All Cells did not finish within {timeout_s:.0f} s; last state: {state}")
        page.wait_for_timeout(500)
        state = page.evaluate(RUN_STATE_JS)
    return state


def _accept_kernel_dialog(page) -> None:
    """A slow start can still show JupyterLab's "Select Kernel" dialog, which swallows every click after it:
    accept its proposal (the notebook's own python3 kernel), as a reader would."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    with contextlib.suppress(Exception):
        dialog.wait_for(state="visible", timeout=3_000)
    if dialog.count():
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        dialog.wait_for(state="detached", timeout=60_000)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)


def _slider_state(page) -> tuple[int, str, list[str], bytes]:
    """(t from the slider's ARIA value, label text, the panels' image sources, a screenshot of the panels)."""
    value = int(float(page.get_attribute(HANDLE, "aria-valuenow")))
    label = page.inner_text(LABEL).strip()
    sources = page.eval_on_selector_all(f"{VIEW} img", "els => els.map(e => e.src)")
    return value, label, sources, page.locator(VIEW).screenshot()


def _press(page, key: str, before: tuple) -> tuple:
    """Press ``key`` on the focused slider handle and wait (≤ 10 s) for the label to follow the slider's value."""
    page.locator(HANDLE).press(key)
    deadline = time.monotonic() + 10
    while True:
        state = _slider_state(page)
        if state[0] != before[0] and f"t = {state[0]} " in state[1]:
            return state
        if time.monotonic() > deadline:
            return state  # the caller's asserts say what did not change
        page.wait_for_timeout(200)


def walk_through(server, chromium_launch: dict, screenshot: Path | None, failure_dir: Path) -> None:
    """Open notebook 05, run all cells, move the t-slider by keyboard and check the view; raises AssertionError."""
    from playwright.sync_api import sync_playwright

    phases: dict[str, float] = {}
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        phases[name], clock = time.monotonic() - clock, time.monotonic()

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)  # JupyterLab is a heavy page: on a loaded 2-core runner a click can take long
        try:
            page.goto(server.url + f"lab/tree/{NOTEBOOK}", timeout=120_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell", timeout=120_000)
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
            _accept_kernel_dialog(page)
            n_code = page.locator(".jp-Notebook .jp-CodeCell").count()
            assert n_code > 0, "the notebook shows no code cells"
            phase("open notebook, kernel idle")

            # Run → Run All Cells, through the menu bar as a reader would.
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            state = _wait_for_run_all(page, RUN_ALL_TIMEOUT_S)
            phase("run all cells")

            errors = page.evaluate(ERROR_OUTPUTS_JS)
            tracebacks = [e for e in errors if "error" in (e["mime"] or "") or "Traceback" in e["text"]]
            assert not tracebacks, "a cell failed:\n" + "\n---\n".join(e["text"][-2000:] for e in tracebacks)
            expected = [None if p is None else f"[{i}]:" for i, p in enumerate(state["prompts"], 1)]
            assert len(state["prompts"]) == n_code and state["prompts"] == expected, (
                f"code cells did not all run once, in order, in a fresh kernel: {state['prompts']}"
            )

            # The slider renders as an ipywidget (not as the text "IntSlider(...)").
            page.wait_for_selector(HANDLE)
            slider = page.locator(SLIDER)
            assert slider.count() == 1, f"expected one t-slider, found {slider.count()}"
            assert slider.inner_text().strip().startswith("t"), "the slider's description is not 't'"
            assert page.locator(f"{VIEW} img").count() == 3, "expected three panels (y_t, ŷ0, noise left)"
            t_min = int(float(page.get_attribute(HANDLE, "aria-valuemin")))
            t_max = int(float(page.get_attribute(HANDLE, "aria-valuemax")))
            page.locator(HANDLE).scroll_into_view_if_needed()
            page.locator(HANDLE).focus()

            start = _slider_state(page)
            assert start[0] == t_max and f"t = {t_max} " in start[1], f"the chain should start at t = T: {start[:2]}"
            steps = {"start": start}
            steps["left"] = _press(page, "ArrowLeft", start)
            steps["home"] = _press(page, "Home", steps["left"])
            steps["right"] = _press(page, "ArrowRight", steps["home"])
            steps["end"] = _press(page, "End", steps["right"])
            expected = {"left": None, "home": t_min, "right": None, "end": t_max}
            for name in ("left", "home", "right", "end"):
                before = list(steps)[list(steps).index(name) - 1]
                (t0, label0, src0, shot0), (t1, label1, src1, shot1) = steps[before], steps[name]
                assert t1 != t0, f"{name}: the slider did not move (t = {t0})"
                if expected[name] is not None:
                    assert t1 == expected[name], f"{name}: slider at t = {t1}, expected {expected[name]}"
                assert label1 != label0 and f"t = {t1} " in label1 and "γ" in label1, (
                    f"{name}: the label did not follow the slider (t = {t0} → {t1}): {label0!r} → {label1!r}"
                )
                assert src1 != src0, f"{name}: the panels' image sources did not change (t = {t0} → {t1})"
                assert shot1 != shot0, f"{name}: the panels look the same after moving t = {t0} → {t1}"
            assert steps["left"][0] < t_max and steps["right"][0] > t_min
            phase("slider checks")

            if screenshot is not None:
                # The picture for the README: the live notebook with the slider 70 % of the way down the chain.
                k = t_max - steps["left"][0]
                state = steps["end"]
                for _ in range(round(0.7 * (t_max - t_min) / k)):
                    state = _press(page, "ArrowLeft", state)
                page.keyboard.press("Control+b")  # hide the file browser: more room for the notebook
                page.locator(SLIDER).evaluate("e => e.scrollIntoView({block: 'start'})")
                page.mouse.move(640, 450)
                page.mouse.wheel(0, -200)  # a little of the cell above, for context
                page.wait_for_timeout(500)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
                phase("screenshot")
        except BaseException:
            failure_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):  # best effort: never hide the real failure
                page.screenshot(path=str(failure_dir / "failure.png"), timeout=10_000)
            raise
        finally:
            browser.close()
            print("walkthrough phases:", ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))


@pytest.mark.browser
@pytest.mark.slow
def test_notebook05_runs_and_slider_moves_images_and_label(jupyterlab, chromium_launch, tmp_path):
    """Run All in JupyterLab gives no error; the t-slider, moved by keyboard, changes the images and the t/γ label."""
    try:
        walk_through(jupyterlab, chromium_launch, SCREENSHOT, tmp_path)
    except AssertionError as e:
        log = jupyterlab.log_tail()
        raise AssertionError(f"{e}\n(page screenshot: {tmp_path / 'failure.png'})\nJupyterLab log:\n{log}") from e
