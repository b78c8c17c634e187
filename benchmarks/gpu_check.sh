#!/usr/bin/env bash
# One call on a GPU machine, under 6 minutes: the unit tests on CUDA, then benchmarks/bench_gpu.py
# (training throughput and MFU of the paper's 16→128 U-Net, eager fp32 against the fast path, 100-step sampling).
#
#   bash benchmarks/gpu_check.sh            # results in $OUT if set, else runs/gpu_check/
#
# Writes gpu_check.log (everything printed) and bench_gpu.json. Exit status: 0 when the tests and the benchmark
# pass, 3 when there is no CUDA device, else the first failure's status (124 = a step ran past its time limit).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python
TOTAL_S=${GPU_CHECK_SECONDS:-340}  # the whole script; the caller's limit is 360 s
TESTS_S=${GPU_CHECK_TESTS_SECONDS:-120}

out=${OUT:-runs/gpu_check}
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"
say() { echo "gpu_check: $*" | tee -a "$log"; }

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >>"$log" 2>&1; then
  say "no CUDA device here (torch.cuda.is_available() is False, or torch is missing for $PYTHON)."
  say "this check needs an NVIDIA GPU; on a CPU run: python benchmarks/bench_cpu.py"
  exit 3
fi

start=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true; } | tee -a "$log"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tee -a "$log"

# Tests that support it read SR3_EDU_TEST_DEVICE and run on the GPU; the others run on the CPU as usual.
export SR3_EDU_TEST_DEVICE=cuda PYTHONUNBUFFERED=1
say "unit tests (limit ${TESTS_S} s)"
timeout -k 10 "$TESTS_S" "$PYTHON" -m pytest tests -q -x -o addopts="" -m "not slow and not browser" \
  -p no:cacheprovider 2>&1 | tee -a "$log"
tests_rc=${PIPESTATUS[0]}
say "unit tests exit status $tests_rc"

left=$((TOTAL_S - (SECONDS - start)))
if [ "$left" -lt 60 ]; then
  say "only ${left} s left: benchmark skipped"
  bench_rc=124
else
  # The benchmark skips its optional phases 25 s before the hard limit, and saves its JSON after every phase.
  say "benchmark (limit ${left} s)"
  timeout -k 10 "$left" "$PYTHON" benchmarks/bench_gpu.py --json "$out/bench_gpu.json" --budget $((left - 25)) \
    2>&1 | tee -a "$log"
  bench_rc=${PIPESTATUS[0]}
  say "benchmark exit status $bench_rc"
fi

say "done in $((SECONDS - start)) s: tests $tests_rc, benchmark $bench_rc; log $log"
if [ "$tests_rc" -ne 0 ]; then exit "$tests_rc"; fi
exit "$bench_rc"
