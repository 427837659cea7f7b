#!/usr/bin/env bash
# The GPU checks of issues 9 and 10 as one prepared run (device time is 15 minutes a session, start included).
#
# On the device (after bench/device/prepare.sh here):
#   run(command="bash bench/device/gpu_checks.sh", carry=[".whl", ".devdata"], timeout_s=600)
# Rehearsal on this CPU (tiny sizes, same steps, modules the GPU image lacks hidden):
#   REHEARSAL=1 OUT=/tmp/gpu_out bash bench/device/gpu_checks.sh
#
# Every step has its own time limit and the run skips a step when the time left (BUDGET_S, default 540 s)
# cannot hold it, so whatever finished comes back; STEPS="i10_ct300 i9_pvs" runs only the steps named
# (i10_variants runs only when named). $OUT receives at most 8 files (the device tool's limit):
# checks.log (environment, each step's command, exit status and tail) and one full log per step.
set -u
OUT=${OUT:?set OUT to a folder for the results}
REHEARSAL=${REHEARSAL:-0}
BUDGET_S=${BUDGET_S:-540}
DATA=${DATA:-$PWD/.devdata}
START=$(date +%s)
mkdir -p "$OUT"
LOG=$OUT/checks.log
export PYTHONUNBUFFERED=1 MEDSEG_SHARED_DATA=$DATA
if [ "$REHEARSAL" = 1 ]; then
  DEVICE=cpu
  hide=$(mktemp -d)  # the GPU image has none of these: the checks must not import them
  printf 'import sys\nfor m in ("napari", "qtpy", "PyQt5", "magicgui", "npe2", "highdicom", "dicomweb_client"):\n    sys.modules[m] = None\n' >"$hide/sitecustomize.py"
  export PYTHONPATH=$PWD:$hide
else
  DEVICE=cuda
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=$PWD:/tmp/site
fi

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]]; then return; fi
  if [ "$(left)" -lt "$limit" ]; then
    echo "=== $name skipped: $(left) s left, needs $limit s" | tee -a "$LOG"
    return
  fi
  echo "=== $name ($(date -u +%T), limit ${limit} s): $*" | tee -a "$LOG"
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log" >>"$LOG"
  echo "=== $name rc=$rc in $(($(date +%s) - t0)) s" | tee -a "$LOG"
}

{
  echo "# gpu_checks $(date -u +%FT%TZ) rehearsal=$REHEARSAL commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, monai, nibabel; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__, 'nibabel', nibabel.__version__)"
  nproc
} >>"$LOG" 2>&1

if [ "$REHEARSAL" = 1 ]; then
  # tiny stand-ins: the same code paths in minutes on a CPU (not results)
  SMALL=(--only hippo --repeat 1)
  CT=(--ct 24 --crop-slices 8 --repeat 1 --overlap 0 --no-warmup)
  SYN=(--size 96 96 64 --hidden 96 --feature 8 --classes 3 --roi 48 --sw-batch 2 --repeat 1)
  POST=(--ct 24 --post-only --repeat 1)
  TRAIN=(--epochs 1 --limit-cases 6 --val-cases 3 --batch-size 2 --config '{"unetr": {"hidden_size": 96, "mlp_dim": 384, "num_heads": 4, "feature_size": 8}, "bsnet": {"filters": [8, 16, 32, 64]}}')
  PVS=(--scale tiny)
  VAR=(--batch 1 --repeat 2 --variants eager channels_last cuda_graphs)
  LIM=(120 240 120 120 240 400 120)
else
  SMALL=(--repeat 5)
  CT=(--ct 300 --repeat 2)
  SYN=(--size 512 512 256 --hidden 768 --feature 16 --classes 14 --roi 96 --sw-batch 16 --repeat 3)
  POST=(--ct 300 --post-only --repeat 5)
  TRAIN=(--epochs 4 --val-cases 40 --batch-size 4 --lr 1e-3)
  PVS=(--scale gpu --epochs 20)
  VAR=(--batch 16 --repeat 10)
  LIM=(45 120 100 35 110 140 150)
fi

# issue 10: engine vs MONAI (hippocampus case, CT example), the whole CT with the bundled pair, the issue's
# UNETR-768 config, and the post-processing alone on the device
step i10_small "${LIM[0]}" python3 bench/bench_inference.py --device "$DEVICE" --data "$DATA" "${SMALL[@]}"
step i10_ct300 "${LIM[1]}" python3 bench/bench_inference.py --device "$DEVICE" --data "$DATA" "${CT[@]}"
step i10_unetr768 "${LIM[2]}" python3 bench/bench_inference.py --device "$DEVICE" --data "$DATA" "${SYN[@]}"
step i10_post "${LIM[3]}" python3 bench/bench_inference.py --device "$DEVICE" --data "$DATA" "${POST[@]}"
# issue 9: the pair at default widths over 200 cases: seconds per epoch and the data-wait share (train_log.csv)
step i9_train "${LIM[4]}" bash -c 'python3 -m napari_medseg.cli train --data "$0/msd-hippocampus" --out /tmp/pair_gpu \
  --device "$1" --trust-labels --seed 0 --no-progress "${@:2}"; cat /tmp/pair_gpu/train_log.csv' \
  "$DATA" "$DEVICE" "${TRAIN[@]}"
# issue 9: BS-Net alone vs the Co-Correcting pair, clean and 40 % noise, side by side on the device
step i9_pvs "${LIM[5]}" bash -c 'trap "kill 0" TERM; args=("$@")
  for spec in "0 b" "0 d" "0.4 b" "0.4 d"; do read -r noise arm <<<"$spec"
    python3 bench/pair_vs_single.py --noise "$noise" --arms "$arm" --out /tmp/pvs "${args[@]}" \
      >"/tmp/pvs_${noise}_$arm.log" 2>&1 &
  done; wait; tail -n 3 /tmp/pvs_*.log; python3 bench/pair_vs_single.py --table /tmp/pvs' \
  _ --device "$DEVICE" --threads 2 "${PVS[@]}"
tar -czf "$OUT/pvs.tar.gz" -C /tmp pvs 2>/dev/null || true
# issue 10 item 2, opt-in (name it in STEPS; not in the default run, whose steps fill the budget): do
# channels-last 3D, torch.compile or CUDA graphs pay for the window step? (compilation alone ~40 s a net)
if [[ " ${STEPS:-} " == *" i10_variants "* ]]; then
  step i10_variants "${LIM[6]}" python3 bench/bench_variants.py --device "$DEVICE" "${VAR[@]}"
fi
echo "# done in $(($(date +%s) - START)) s" >>"$LOG"
