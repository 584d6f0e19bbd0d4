#!/usr/bin/env bash
# One script for a machine with an NVIDIA GPU: build the package, run the CUDA-marked tests,
# then the sections asked for (default: throughput pbt):
#   throughput  training throughput of the default network with and without torch.compile
#               and bf16 autocast (and the env's share of each iteration), one table (~5 min)
#   pbt         population throughput, P = 1, 4, 16, 64 members of (64, 64) (~1 min)
#   tune-batch  bench/tune_batch.py --device cuda --batch 64, each arm cut at
#               TUNE_BATCH_MINUTES (default 3) minutes (~7 min)
#   walkforward  bench/walkforward_population.py --device cuda: the walk-forward bench's 42
#               windows as one population on the GPU against the CPU process pool (~10 min)
#   tune-confirm  bench/tune_batch.py --confirm --device cuda: a study's confirmation (fast
#               and baseline presets x 5 seeds x 65,536 steps) one seed after another and
#               batched (~5 min)
#
#   bash bench/gpu_check.sh [section ...]   # results in bench/results/ (and in $OUT if set)
#
# Offline machines: put wheels of missing pure-Python packages (gymnasium,
# farama-notifications) in .whl/ and they are installed to /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
start=$(date +%s)
echo "== build"
$PY -m pip install -q --no-build-isolation --no-deps . 2>&1 | grep -v "^WARNING: Running pip as" || true
# Run from outside the checkout so the installed package (with its compiled core) is used.
cd /tmp
$PY -c "import fastrl, fastrl._core, torch; print('fastrl', fastrl.__version__, 'torch', torch.__version__, torch.cuda.get_device_name(0))"
cd - >/dev/null

echo "== CUDA tests"
cuda_tests=${CUDA_TESTS:-$(grep -l "mark.cuda" tests/test_*.py)}  # CUDA_TESTS: fewer files
timeout 180 $PY -m pytest -q -m cuda -p no:cacheprovider $cuda_tests 2>&1 | tail -15 || true

sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(throughput pbt)
want() { [[ " ${sections[*]} " == *" $1 "* ]]; }

if want throughput; then
echo "== training throughput, default network (2048, 1024, 512, 256)"
common=(--device cuda --networks default --num-envs 4096 --num-steps 8 --minibatch 8192
        --epochs 4 --updates 3 --bare-seconds 3)
timeout 200 $PY bench/train_throughput.py "${common[@]}"
cp bench/results/train_throughput_cuda.json bench/results/train_throughput_cuda_compiled.json
timeout 120 $PY bench/train_throughput.py "${common[@]}" --no-compile
cp bench/results/train_throughput_cuda.json bench/results/train_throughput_cuda_eager.json

$PY - <<'PY'
import json
rows = []
for mode in ("compiled", "eager"):
    data = json.load(open(f"bench/results/train_throughput_cuda_{mode}.json"))
    for r in data["results"]:
        rows.append((data["device_name"], mode, r["precision"], r["env_steps_per_s"],
                     r["update_samples_per_s"], r["bare_samples_per_s"], r["env_frac"],
                     r["inference_frac"], r["copy_frac"], r["update_frac"]))
print(f"\n{'GPU':<22} {'mode':<9} {'prec':<5} {'env steps/s':>12} {'update smp/s':>13} "
      f"{'bare smp/s':>12} {'env':>6} {'infer':>6} {'copy':>6} {'update':>7}")
for g, m, p, sps, upd, bare, e, i, c, u in rows:
    print(f"{g[:22]:<22} {m:<9} {p:<5} {sps:>12,.0f} {upd:>13,.0f} {bare:>12,.0f} "
          f"{e:>6.1%} {i:>6.1%} {c:>6.1%} {u:>7.1%}")
json.dump({"rows": rows}, open("bench/results/gpu_check.json", "w"), indent=1)
PY
if [ -n "${OUT:-}" ]; then cp bench/results/train_throughput_cuda_*.json bench/results/gpu_check.json "$OUT"/; fi
fi

if want pbt; then
echo "== population-based training throughput (P = 1, 4, 16, 64 members of (64, 64); target 10x at 64)"
timeout 240 $PY bench/pbt.py --device cuda --only throughput --num-envs 64 --num-steps 64 \
  --minibatch 1024 --epochs 4 --updates 3 || true
if [ -n "${OUT:-}" ] && [ -f bench/results/pbt_cuda.json ]; then cp bench/results/pbt_cuda.json "$OUT"/; fi
fi

if want tune-batch; then
echo "== batched trials: 64 trials x 200,000 steps, sequential and B = 64 (target 20x)"
timeout 560 $PY bench/tune_batch.py --device cuda --batch 64 \
  --minutes "${TUNE_BATCH_MINUTES:-3}" 2>&1 | grep -v "^\[.*\] trial " || true
if [ -n "${OUT:-}" ]; then cp bench/results/tune_batch_cuda.* "$OUT"/ 2>/dev/null || true; fi
fi

if want tune-confirm; then
echo "== a study's confirmation: the presets x 5 fresh seeds, one after another and batched"
timeout 560 $PY bench/tune_batch.py --confirm --device cuda 2>&1 | grep -v "^\[" || true
if [ -n "${OUT:-}" ] && [ -f bench/results/tune_batch_confirm_cuda.json ]; then
  cp bench/results/tune_batch_confirm_cuda.json bench/results/tune_batch_confirm_cuda.md "$OUT"/
fi
fi
if want walkforward; then
echo "== walk-forward windows as one population on the GPU, against the CPU pool"
timeout 900 $PY bench/walkforward_population.py --device cuda || true
[ -n "${OUT:-}" ] && cp bench/results/walkforward_population_cuda.json "$OUT"/ 2>/dev/null || true
fi
echo "gpu_check finished in $(( $(date +%s) - start )) s"
