"""Does the fast path give the same results? bf16 against fp32, for sampling and for training, on this machine.

1. **Sampling.** `sr3_edu.evaluate.evaluate` with the shipped model on the built-in validation photos (centre crops,
   the model file's own sampler, the same seed), once with ``precision="fp32"`` and once with ``"bf16"``: the change
   of PSNR and PSNR-Y, per photo and on average. Both chains draw the same noise; they differ only by arithmetic.
2. **Training.** The tiny preset trained for ``--train-steps`` steps with ``precision="fp32"`` and ``"bf16"``, each
   with two seeds: the mean loss of the last half of each run. bf16 counts as "the same" when its change of the mean
   loss (same seed) is within the run-to-run noise of fp32 (seed 0 against seed 1).

    python benchmarks/precision_check.py --json runs/precision_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import common

common.use_repo_package()

import torch  # noqa: E402

from sr3_edu.builtin import builtin_images  # noqa: E402
from sr3_edu.checkpoint import load_model  # noqa: E402
from sr3_edu.evaluate import evaluate  # noqa: E402
from sr3_edu.train import TrainConfig, Trainer  # noqa: E402


def sampling(crop: int, samples: int) -> dict:
    model, info = load_model(None)
    images = builtin_images("val")
    out = {}
    for precision in ("fp32", "bf16"):
        t0 = time.perf_counter()
        r = evaluate(model, images, samples=samples, crop=crop, seed=0, sr3_info=info, regression_model=None,
                     precision=precision, progress=False)  # fmt: skip
        out[precision] = {
            "seconds": time.perf_counter() - t0,
            "mean": {k: r["methods"]["sr3"][k] for k in ("psnr", "psnr_y", "consistency")},
            "images": {i["name"]: i["methods"]["sr3"]["psnr"] for i in r["images"]},
        }
    out["delta_psnr"] = out["bf16"]["mean"]["psnr"] - out["fp32"]["mean"]["psnr"]
    out["delta_psnr_y"] = out["bf16"]["mean"]["psnr_y"] - out["fp32"]["mean"]["psnr_y"]
    out["delta_psnr_per_image"] = {n: out["bf16"]["images"][n] - v for n, v in out["fp32"]["images"].items()}
    return out


def training(steps: int, batch: int) -> dict:
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            for seed in (0, 1):
                cfg = TrainConfig.preset("tiny", steps=steps, batch_size=batch, seed=seed, precision=precision,
                                         device="cpu", log_every=1, sample_every=0, save_every=0)  # fmt: skip
                out = Path(tmp) / f"{precision}_{seed}"
                t0 = time.perf_counter()
                with Trainer(cfg, out) as trainer:
                    trainer.train()
                losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
                tail = losses[len(losses) // 2 :]
                runs[f"{precision} seed {seed}"] = {
                    "seconds": time.perf_counter() - t0,
                    "final_mean_loss": sum(tail) / len(tail),
                }
                print(f"  {precision} seed {seed}: mean loss of the last {len(tail)} steps "
                      f"{runs[f'{precision} seed {seed}']['final_mean_loss']:.5f}", flush=True)  # fmt: skip
    m = {k: v["final_mean_loss"] for k, v in runs.items()}
    noise = abs(m["fp32 seed 0"] - m["fp32 seed 1"])
    change = max(abs(m["bf16 seed 0"] - m["fp32 seed 0"]), abs(m["bf16 seed 1"] - m["fp32 seed 1"]))
    return {"runs": runs, "fp32_run_to_run": noise, "bf16_change": change, "within_noise": change <= noise}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crop", type=int, default=128, help="centre crop of the validation photos (HR pixels)")
    p.add_argument("--samples", type=int, default=2, help="SR3 samples per photo")
    p.add_argument("--train-steps", type=int, default=300, help="steps of each training run (0: skip training)")
    p.add_argument("--batch-size", type=int, default=8, help="training batch")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args()
    print(common.machine_line(f"{torch.get_num_threads()} threads"))
    result = {"machine": {"cpu": common.cpu_name(), "flags": common.cpu_flags()}}
    s = result["sampling"] = sampling(args.crop, args.samples)
    print(
        f"\nsampling ({args.crop}² crops of the 3 validation photos, {args.samples} samples each, the model's sampler):"
    )
    print(common.markdown_table(
        ["precision", "PSNR", "PSNR-Y", "consistency", "seconds"],
        [[k, f"{s[k]['mean']['psnr']:.3f}", f"{s[k]['mean']['psnr_y']:.3f}", f"{s[k]['mean']['consistency']:.3f}",
          f"{s[k]['seconds']:.1f}"] for k in ("fp32", "bf16")],
    ))  # fmt: skip
    per = ", ".join(f"{n} {d:+.3f}" for n, d in s["delta_psnr_per_image"].items())
    print(f"bf16 − fp32: PSNR {s['delta_psnr']:+.3f} dB, PSNR-Y {s['delta_psnr_y']:+.3f} dB (per photo: {per})")
    if args.train_steps > 0:
        print(f"\ntraining (tiny preset, {args.train_steps} steps, batch {args.batch_size}, built-in photos):")
        t = result["training"] = training(args.train_steps, args.batch_size)
        print(common.markdown_table(
            ["run", "mean loss, last half", "seconds"],
            [[k, f"{v['final_mean_loss']:.5f}", f"{v['seconds']:.0f}"] for k, v in t["runs"].items()],
        ))  # fmt: skip
        print(f"bf16's change of the mean loss {t['bf16_change']:.5f} against fp32's run-to-run difference "
              f"{t['fp32_run_to_run']:.5f}: {'within' if t['within_noise'] else 'OUTSIDE'} the noise")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
