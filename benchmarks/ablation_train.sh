#!/usr/bin/env bash
# The five training runs of the parametrisation ablation (benchmarks/ablation.py prints their table).
# Each names its parametrisation: the U-Net presets are "v" now, the ablation ran when they were "eps".
# Equal budget: the same data, seed, lr, batch, steps and precision; one CPU thread each, two at a time:
#   bash benchmarks/ablation_train.sh eps v        # then: mean offset, then: v_photos
# (e) trains on data/photos, which `python -m sr3_edu photos --out data/photos` writes (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--preset tiny --steps 2000 --batch-size 16 --lr 2e-4 --seed 0 --threads 1 --precision bf16 --color-augment
        --save-every 250 --sample-every 1000)
run() {
  local name=$1; shift
  python -m sr3_edu train "${common[@]}" --out "runs/ablation/$name" "$@" > "runs/ablation/$name.log" 2>&1
}
mkdir -p runs/ablation
pids=()
for name in "$@"; do
  case $name in
    eps)      run eps --data builtin --parametrisation eps ;;
    v)        run v --data builtin --parametrisation v ;;
    mean)     run mean --data builtin --parametrisation mean ;;
    offset)   run offset --data builtin --parametrisation eps --offset-noise 0.1 ;;
    v_photos) run v_photos --data data/photos --parametrisation v ;;
    *) echo "unknown run $name (eps, v, mean, offset, v_photos)" >&2; exit 2 ;;
  esac &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
