"""Whole photos through `python -m sr3_edu upscale`, as a user runs it: wall time, peak memory and tile seams.

Each case is one fresh `upscale` process on a built-in photo (256×256 → 1024×1024, and 1024×1024 → 4096×4096), timed
from start to exit, its peak resident memory read from the kernel (``os.wait4``). The default case passes no option at
all; the other rows add the flags they name. The 16-megapixel case runs ``--large-steps`` steps (memory does not grow
with the number of steps; time does, linearly), and its full-run time is projected from its seconds per step.

Seams: on each 1024×1024 output, the mean absolute jump between neighbouring rows (and columns) where one tile ends or
begins, against the same jump everywhere else; 1.0 means a tile border looks like any other row.

    python benchmarks/bench_upscale.py --json runs/bench_upscale.json
    python benchmarks/bench_upscale.py --cases default,ddim20 --large-steps 0   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

common.use_repo_package()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from sr3_edu.builtin import builtin_images  # noqa: E402
from sr3_edu.checkpoint import load_model  # noqa: E402
from sr3_edu.devices import resolve_precision  # noqa: E402
from sr3_edu.metrics import seam_ratio  # noqa: E402
from sr3_edu.pipeline import AUTO_OVERLAP, AUTO_TILE, FastNetwork, tiled  # noqa: E402

CASES = {
    "default": [],
    "ddim20": ["--sampler", "ddim", "--steps", "20"],
    "fp32": ["--precision", "fp32"],
    "no-tiles": ["--tile", "0", "--steps", "2"],
}
"""256 → 1024 runs: name → the flags added to the bare command. ``no-tiles`` runs 2 steps only (whole-image attention
over 65k positions is what the tiles avoid; its time per step is the figure)."""


def photo(side: int) -> Image.Image:
    """A built-in photo cut to a square and resized to ``side`` × ``side`` (the input a user would hand in)."""
    name, split = ("grace_hopper", "val") if side <= 512 else ("retina", "train")
    img = builtin_images(split)[name]
    s = min(img.size)
    left, top = (img.width - s) // 2, (img.height - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((side, side), Image.Resampling.BICUBIC)


def run_case(inp: Path, out: Path, flags: list[str]) -> dict:
    """One `upscale` process: wall seconds, peak RSS in MiB (of that process alone), return code, its last line."""
    cmd = [sys.executable, "-m", "sr3_edu", "upscale", "--input", str(inp), "--output", str(out), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd + flags, cwd=common.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    rss = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return {"command": " ".join(["python -m sr3_edu upscale --input IN --output OUT", *flags]), "seconds": wall,
            "peak_rss_mib": rss, "rc": proc.returncode, "stderr_tail": err.strip().splitlines()[-3:]}  # fmt: skip


def steps_of(flags: list[str], info: dict) -> int:
    return int(flags[flags.index("--steps") + 1]) if "--steps" in flags else int(info.inference["steps"])


def seams(img: Image.Image, scale: int, multiple: int) -> float | None:
    """`sr3_edu.metrics.seam_ratio` across the borders of the auto tiles ``upscale`` used on ``img``."""
    y = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
    H, W = y.shape[-2:]
    tiles = tiled(_Multiple(multiple), "auto", scale, H, W)
    if tiles is None:
        return None
    return seam_ratio(y, tiles.borders(H), tiles.borders(W))


class _Multiple:
    """A stand-in network with the U-Net's ``multiple``: enough for `TiledModel.layout`."""

    def __init__(self, multiple: int):
        self.multiple = multiple

    def parameters(self):
        return iter(())


def tile_costs(model, sides: list[int], repeats: int = 3) -> dict[int, float]:
    """Microseconds per output pixel of one network evaluation on a tile of each side, on the default fast path
    (`FastNetwork`), timed in alternating turns in this process: the measure behind `AUTO_TILE`."""
    net = FastNetwork(model)
    gamma = torch.full((1,), 0.5)
    inputs = {s: (torch.rand(1, 3, s // 4, s // 4) * 2 - 1, torch.randn(1, 3, s, s), gamma) for s in sides}
    fns = {s: (lambda a=a: net(*a)) for s, a in inputs.items()}
    with torch.inference_mode():
        timings = common.alternate(fns, warmup=1, repeats=repeats)
    return {s: common.median(timings[s][0]) / (s * s) * 1e6 for s in sides}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help=f"256 → 1024 cases, comma-separated: {', '.join(CASES)}")
    p.add_argument(
        "--large-steps",
        type=int,
        default=3,
        help="steps of the 1024 → 4096 run (0: skip it); its full-run time is projected from its s/step",
    )
    p.add_argument(
        "--tile-sides", default="128,192,256,320,512", help="tile sides to time one network call on ('' to skip)"
    )
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r}; choose among {', '.join(CASES)}")

    model, info = load_model(None)
    fast = resolve_precision("auto", torch.device("cpu"))
    print(
        common.machine_line(f"--precision auto = {fast}", f"auto tiles ≤ {AUTO_TILE}² with ≥ {AUTO_OVERLAP} px overlap")
    )
    sides = [int(s) for s in args.tile_sides.split(",") if s.strip()]
    costs = tile_costs(model, sides) if sides else {}
    if costs:
        print("\none network call per tile (µs per output pixel, median of 3, in turns):")
        cells = [f"{v:.2f}" for v in costs.values()]
        print(common.markdown_table(["tile side", *map(str, costs)], [["µs/pixel", *cells]]))
    busy, before = common.OthersMeter(), os.times()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "in256.png", Path(tmp) / "in1024.png"
        photo(256).save(small)
        jobs = [(c, small, CASES[c]) for c in cases]
        if args.large_steps > 0:
            jobs.append(("16 MP", large, ["--steps", str(args.large_steps)]))
            photo(1024).save(large)
        for name, inp, flags in jobs:
            out = Path(tmp) / f"out_{len(rows)}.png"
            r = run_case(inp, out, flags)
            r["case"], r["input"] = name, f"{Image.open(inp).width}² → {4 * Image.open(inp).width}²"
            r["steps"] = steps_of(flags, info)
            if r["rc"] == 0:
                if "--tile" not in flags:  # the borders of the auto tiles; a run in one piece has none
                    r["seam_ratio"] = seams(Image.open(out).convert("RGB"), info.scale, model.multiple)
                if name == "16 MP":
                    # the whole-run time at the model's own number of steps, from the seconds per step measured here
                    full = int(info.inference["steps"])
                    r["projected_seconds_at_default_steps"] = r["seconds"] * full / r["steps"]
            rows.append(r)
            print(f"{name}: rc {r['rc']}, {r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    cores, after = busy.cores(), os.times()
    if cores is not None:  # the upscale processes are ours: take their CPU time out of "others"
        ours = (after.children_user + after.children_system) - (before.children_user + before.children_system)
        cores = max(0.0, cores - ours / max(after.elapsed - before.elapsed, 1e-9))
    print()
    print(common.markdown_table(
        ["case", "input → output", "flags", "steps", "wall s", "s/step", "peak RSS MiB", "seam ratio"],
        [[r["case"], r["input"], r["command"].split("OUT", 1)[1].strip() or "(none: the defaults)", str(r["steps"]),
          common.fmt(r["seconds"], 1), common.fmt(r["seconds"] / r["steps"], 2), f"{r['peak_rss_mib']:.0f}",
          common.fmt(r.get("seam_ratio"), 3)] for r in rows],
    ))  # fmt: skip
    for r in rows:
        if "projected_seconds_at_default_steps" in r:
            minutes = r["projected_seconds_at_default_steps"] / 60
            print(f"\n16 MP at {info.inference['steps']} steps: about {minutes:.0f} min (from {r['steps']} steps)")
        if r["rc"]:
            print(f"\n{r['case']} failed (rc {r['rc']}): {' / '.join(r['stderr_tail'])}")
    if line := common.others_line(cores):
        print(f"\n{line}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        machine = {"cpu": common.cpu_name(), "flags": common.cpu_flags(), "precision_auto": fast}
        out = {"machine": machine, "rows": rows, "tile_us_per_pixel": costs}
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 1 if any(r["rc"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
