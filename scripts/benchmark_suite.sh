#!/usr/bin/env bash
# The accelerator figures of docs/performance.md (issue 8, parts 3-4), one command per part, each
# writing its full log (and JSON where the script has one) under DIR and printing its table at the end.
#
#   scripts/benchmark_suite.sh DIR [PART ...]     PART: device speed-b speed-l l336 profile data plan (default: all)
#
#   device   what the run sees: nvidia-smi, jax.devices(), torch.cuda, package versions
#   speed-b  B/32 and B/16 at 8 frames, batch 64, ours beside HF XCLIPModel, train + infer (bf16 on a GPU)
#   speed-l  L/14 at 8 frames, batch 16
#   l336     L/14@336 at 16 frames, training at batch 8 with remat, the two frameworks one after the other
#   profile  the B/16 training step's top operations (jax.profiler), trace kept in $TRACE_DIR (DIR/trace_b16)
#   data     the input pipeline with 1..16 grain workers (8 frames at 224 from 340p H.264)
#   plan     python -m xclip_jax.plan --topology local: the roofline's estimate beside the measured train step
#            and peak memory (B/16-8, batch 32; $PLAN_ARGS replaces the config arguments)
#
# PYTHON (default: python) runs the scripts; parts run in the order given, a failed part does not stop the next.
set -uo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
out=$1
shift
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(device speed-b speed-l l336 profile data plan)
py=${PYTHON:-python}
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$out"
export PYTHONUNBUFFERED=1

run() {  # run NAME COMMAND...: the command's output to DIR/NAME.log, its exit status and wall time to stdout
  local name=$1 start status
  shift
  start=$(date +%s)
  echo "== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  status=$?
  echo "   exit $status after $(($(date +%s) - start)) s; log $out/$name.log"
  return $status
}

table() {  # the markdown table a benchmark printed last
  grep '^|' "$out/$1.log" | tail -n "${2:-8}"
}

failed=0
for part in "${parts[@]}"; do
  case $part in
    device)
      run device bash -c "date -u; nvidia-smi || true; nproc; free -g; $py -c 'import jax, flax, optax; \
print(jax.__version__, flax.__version__, optax.__version__, jax.devices())'; \
$py -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())'" \
        || failed=1
      tail -n 4 "$out/device.log" ;;
    speed-b)
      run speed-b "$py" scripts/benchmark.py --peer hf --variant B/32,B/16 --batch 64 --repeats 5 \
        --json "$out/speed-b.json" || failed=1
      table speed-b ;;
    speed-l)
      run speed-l "$py" scripts/benchmark.py --peer hf --variant L/14 --batch 16 --repeats 3 \
        --json "$out/speed-l.json" || failed=1
      table speed-l ;;
    l336)
      run l336 "$py" scripts/benchmark.py --peer hf --variant L/14@336 --frames 16 --rows train --batch 8 --remat \
        --one-at-a-time --repeats 3 --json "$out/l336.json" || failed=1
      table l336 ;;
    profile)
      run profile "$py" scripts/profile_step.py --framework ours --row train --variant B/16 --batch 64 \
        --trace-dir "${TRACE_DIR:-$out/trace_b16}" || failed=1
      tail -n 30 "$out/profile.log" ;;
    data)
      run data "$py" scripts/benchmark_data.py --workdir "${TMPDIR:-/tmp}/xclip_bench" --videos 16 --clips 128 \
        --workers 1,2,4,8,16 || failed=1
      tail -n 20 "$out/data.log" ;;
    plan)
      # shellcheck disable=SC2086  # PLAN_ARGS is a list of arguments
      run plan "$py" -m xclip_jax.plan ${PLAN_ARGS:---config configs/kinetics.py:variant=B/16,frames=8 \
        --config.data.batch_size=32 --config.train.grad_accum_steps=1} --topology local --programs train \
        --num-classes 400 --output "$out/plan.json" || failed=1
      tail -n 30 "$out/plan.log" ;;
    *)
      echo "unknown part '$part' (choose from: device speed-b speed-l l336 profile data plan)" >&2
      failed=1 ;;
  esac
done
exit $failed
