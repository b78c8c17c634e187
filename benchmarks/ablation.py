"""Which f_θ lets Algorithm 2 run from pure noise? The ablation table of the parametrisations, at equal budget.

Each run is trained by `benchmarks/ablation_train.sh` (same data, seed, lr, batch and steps; one thread each). This
script loads each run's EMA weights and prints, per run:

* the diagnosis (`sr3_edu.diagnose`): how much ε̂'s image-wide mean moves per unit of a constant added to y_t (the
  "gain") at γ ∈ {1e-4, 1e-3, 1e-2, 0.1, 0.5}, against an exact estimate's 1/√(1−γ); the mean over those γ of
  |mean(ε̂ − ε)| (ε̄'s bias); and the image-wide mean of y_t along the chain below, against the photos' √γ_t·ȳ_0;
* the quality of the paper's sampler itself — Algorithm 2 from pure noise, σ_t² = 1 − α_t, no clipping — on the
  built-in validation photos: PSNR, PSNR-Y, consistency, colour error and detail ratio, bicubic beside them.

    python benchmarks/ablation.py                       # the runs under runs/ablation/
    python benchmarks/ablation.py --run v=runs/ablation/v --run eps=path/to/model.pt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from common import cpu_flags, cpu_name, use_repo_package

use_repo_package()

import torch  # noqa: E402

from sr3_edu.checkpoint import load_model  # noqa: E402
from sr3_edu.diagnose import noise_estimate_errors, paper_chain  # noqa: E402
from sr3_edu.evaluate import score  # noqa: E402
from sr3_edu.folders import load_images  # noqa: E402
from sr3_edu.images import upscale_bicubic  # noqa: E402
from sr3_edu.protocol import tensor_pairs  # noqa: E402

GAMMAS = (1e-4, 1e-3, 1e-2, 0.1, 0.5)
RUNS = {
    "(a) eps": "runs/ablation/eps",
    "(b) v": "runs/ablation/v",
    "(c) mean": "runs/ablation/mean",
    "(d) eps + offset noise": "runs/ablation/offset",
    "(e) v + more photos": "runs/ablation/v_photos",
}
QUALITY = ("psnr", "psnr_y", "consistency", "color_error", "detail_ratio")


def _checkpoint(path: str) -> Path:
    p = Path(path)
    return p / "checkpoints" / "last.pt" if p.is_dir() else p


@torch.inference_mode()
def measure(model, info, hr: torch.Tensor, lr: torch.Tensor, *, steps: int, seeds: int) -> dict:
    """Diagnosis and pure-noise quality of one model on the photos (hr, lr): one dict of numbers."""
    errors = noise_estimate_errors(model, lr, hr, GAMMAS, repeats=4, seed=0)
    scores, worst, final = {k: [] for k in QUALITY}, [], []
    for seed in range(seeds):
        out, kept = paper_chain(model, lr, info, steps=steps, every=max(1, steps // 10), seed=seed)
        for k, v in score(out, hr, lr, info.scale).items():
            if k in scores:
                scores[k] += v.tolist()
        # the chain's image-wide mean against the photos' own at that noise level, √γ_t·ȳ_0, per image and channel
        target = hr.mean(dim=(2, 3))
        offs = [(s.y_t.mean(dim=(2, 3)) - math.sqrt(s.gamma) * target).abs().max().item() for s in kept]
        worst.append(max(offs))
        final.append(out.mean().item())
        if seed == 0:
            chain = [{"t": s.t, "gamma": s.gamma, "mean": s.y_t.mean().item(), "offset": o} for s, o in zip(kept, offs)]
    return {
        "step": info.step,
        "gain": [r["mean_response"] for r in errors],
        "gain_exact": [r["mean_response_exact"] for r in errors],
        "eps_bias": sum(r["eps_bias"] for r in errors) / len(errors),
        "chain_worst_offset": max(worst),
        "chain_final_mean": sum(final) / len(final),
        "chain": chain,
        **{k: sum(v) / len(v) for k, v in scores.items()},
    }


def format_tables(rows: dict[str, dict], bicubic: dict, target_mean: float, steps: int, seeds: int, n: int) -> str:
    head = f"{'run':<24}{'step':>6}" + "".join(f"{f'g@{g:g}':>9}" for g in GAMMAS) + f"{'|ε̄ err|':>9}"
    head += f"{'chain |Δm|':>11}{'final m':>9}"
    exact = rows[next(iter(rows))]["gain_exact"] if rows else [1 / math.sqrt(1 - g) for g in GAMMAS]
    lines = [
        f"Diagnosis: gain of ε̂'s mean per unit offset of y_t (exact: {', '.join(f'{e:.3f}' for e in exact)}); "
        f"|ε̄ err| averaged over those γ; worst |mean(y_t) − √γ_t·ȳ_0| along a {steps}-step chain from pure noise "
        f"and the final mean (photos: {target_mean:+.3f})",
        "",
        head,
        "-" * len(head),
    ]
    for label, r in rows.items():
        lines.append(
            f"{label:<24}{r['step'] or 0:>6}"
            + "".join(f"{g:>9.3f}" for g in r["gain"])
            + f"{r['eps_bias']:>9.4f}{r['chain_worst_offset']:>11.3f}{r['chain_final_mean']:>+9.3f}"
        )
    cols = [("psnr", "PSNR", "{:.2f}"), ("psnr_y", "PSNR-Y", "{:.2f}"), ("consistency", "Consist.", "{:.1f}")]
    cols += [("color_error", "Colour", "{:.4f}"), ("detail_ratio", "Detail", "{:.2f}")]
    head = f"{'run':<24}" + "".join(f"{h:>10}" for _, h, _ in cols)
    lines += [
        "",
        f"Algorithm 2 from pure noise ({steps} steps, σ² = 1 − α_t, no clipping), {n} validation photos × {seeds} "
        f"seed(s)",
        "",
        head,
        "-" * len(head),
    ]
    for label, r in {"bicubic": bicubic, **rows}.items():
        lines.append(f"{label:<24}" + "".join(f"{f.format(r[k]):>10}" for k, _, f in cols))
    return "\n".join(lines)


def plot(rows: dict[str, dict], target_mean: float, path: str) -> None:
    """Two panels: the gain against γ (and the exact 1/√(1−γ)); the mean of y_t along the chain from pure noise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    exact = [1 / math.sqrt(1 - g) for g in GAMMAS]
    ax[0].plot(GAMMAS, exact, "k--", label="exact 1/√(1−γ)")
    for label, r in rows.items():
        ax[0].plot(GAMMAS, r["gain"], "o-", label=label)
        ts = [c["t"] for c in r["chain"]]
        ax[1].plot(ts, [c["mean"] for c in r["chain"]], "o-", label=label)
    ax[0].set(xscale="log", xlabel="γ", ylabel="Δ mean(ε̂) / offset of y_t", title="response to an image-wide offset")
    ax[1].axhline(target_mean, color="k", ls="--", label="the photos' mean")
    ax[1].set(
        xlabel="t (the chain runs from pure noise, left, to t = 0)",
        ylabel="mean of y_t",
        title="a chain from pure noise",
    )
    ax[1].invert_xaxis()
    ax[0].legend(fontsize=7)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", action="append", metavar="LABEL=PATH", help="a run folder or model file (repeatable)")
    p.add_argument("--crop", type=int, default=128, help="center crop of each validation photo")
    p.add_argument("--steps", type=int, default=100, help="steps of the chain from pure noise")
    p.add_argument("--seeds", type=int, default=2, help="chains per photo")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    p.add_argument("--plot", default=None, help="also draw the gains and the chains' means into this PNG")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = dict(r.split("=", 1) for r in args.run) if args.run else RUNS
    found = {label: _checkpoint(path) for label, path in runs.items() if _checkpoint(path).is_file()}
    for label, path in runs.items():
        if label not in found:
            print(f"note: {label}: no {_checkpoint(path)}, left out", file=sys.stderr)
    if not found:
        print("no run to measure (train them with benchmarks/ablation_train.sh)", file=sys.stderr)
        return 1
    pairs = tensor_pairs(load_images("builtin"), 4, args.crop)
    lr = torch.cat([x for x, _ in pairs.values()])
    hr = torch.cat([y0 for _, y0 in pairs.values()])
    print(f"CPU: {cpu_name()} ({cpu_flags()}), {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    t0 = time.perf_counter()
    rows = {}
    for label, path in found.items():
        model, info = load_model(path)
        if info.scale != 4:
            raise SystemExit(f"{path} is ×{info.scale}; the ablation compares ×4 models")
        rows[label] = measure(model, info, hr, lr, steps=args.steps, seeds=args.seeds)
        print(f"  measured {label} ({path}) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    bic = score(upscale_bicubic(lr, 4), hr, lr, 4)
    bicubic = {k: v.mean().item() for k, v in bic.items()}
    print(format_tables(rows, bicubic, hr.mean().item(), args.steps, args.seeds, len(pairs)))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": rows, "bicubic": bicubic}, indent=1))
    if args.plot:
        plot(rows, hr.mean().item(), args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
