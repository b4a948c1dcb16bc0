#!/bin/bash
# The gpu-base-short run on a GPU machine lent through the device tool, from the repo root
# there, in two calls on one warm machine (15 minutes of device time in all, starts included;
# a machine goes back 30 s after a call, so make the second call at once):
#   bash experiments/gpu-base/device.sh prep        # carry .gpu/p1: packages, frames, noise;
#                                                   # model smoke test, 3 training steps (~1.5 min)
#   bash experiments/gpu-base/device.sh train 6.5   # carry .gpu/p2: audio; fusion, audio-only and
#                                                   # video-only side by side for 6.5 min, no export
# What `train` returns under $OUT (at most 8 files come back): for each mode M its last
# checkpoint M_last.ckpt and M_run.tgz (the run folder: logs, train.log, learning curves and
# checkpoints/best.ckpt, the one with the highest validation note F1).
# Local rehearsal (tests/test_gpu_base.py): AVF_DEVICE_ROOT=/tmp/dev PYTHON=.venv/bin/python
# AVF_NO_SITE=1 AVF_DEVICE=cpu OUT=/tmp/out bash experiments/gpu-base/device.sh prep (with
# AVF_SMOKE_CONFIG / AVF_CONFIG naming tiny configs, AVF_BATCH the smoke test's batch)
set -euo pipefail
export PYTHONUNBUFFERED=1
ROOT=${AVF_DEVICE_ROOT:-/root}   # data, packages and runs: outside the copied tree
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" "$ROOT/avdata" "$ROOT/runs" data
if [ "${1:-}" = train ] && [ ! -f "$ROOT/avdata/corpus/manifest.jsonl" ]; then
  echo "no unpacked part 1 on this machine (did it go back after prep?): run prep first" >&2
  exit 3
fi
if [ -z "${AVF_NO_SITE:-}" ]; then
  [ -d "$ROOT/site" ] || tar xzf .gpu/p1/site.tgz -C "$ROOT"
  export PYTHONPATH=$ROOT/site:$PWD
fi
ln -sfn "$ROOT/avdata/corpus" data/corpus
ln -sfn "$ROOT/avdata/noise" data/noise
ln -sfn "$ROOT/avdata/smoke" data/smoke
# data workers per mode (16 cores): a window's video (frames read and augmented) costs ~40 ms
# of a core, its degraded audio ~5 ms (python -m eval.loader_speed, experiments/gpu-base/README.md)
WORKERS=${AVF_WORKERS:-"fusion=6 audio=2 video=5"}

case "${1:-}" in
  prep)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    "$PY" experiments/gpu-base/transfer.py unpack --src .gpu --dest "$ROOT/avdata" --part 1
    "$PY" experiments/gpu-base/smoke.py --device "${AVF_DEVICE:-cuda}" --batch "${AVF_BATCH:-32}"
    "$PY" -m avfusion.cli train --config "${AVF_SMOKE_CONFIG:-experiments/gpu-base/smoke.yaml}" --mode fusion \
      --out "$ROOT/runs/smoke" --no-export --no-progress --no-resume 2>&1 | tee "$OUT/smoke.log"
    test -f "$ROOT/runs/smoke/checkpoints/last.ckpt"
    grep -q "val/note_f1" "$ROOT/runs/smoke/logs/metrics.csv"
    echo "prep ok"
    ;;
  train)
    minutes=${2:?give the training minutes, e.g. 6.5}
    if [ ! -f "$ROOT/avdata/.part2" ]; then
      "$PY" experiments/gpu-base/transfer.py unpack --src .gpu --dest "$ROOT/avdata" --part 2
      touch "$ROOT/avdata/.part2"
    fi
    # a hard stop 2 min after the timer's, so that the copies below always run
    limit=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 120 }')
    pids=()
    for w in $WORKERS; do
      mode=${w%=*}
      run=$ROOT/runs/gpu-base-short-$mode
      mkdir -p "$run"
      timeout "$limit" "$PY" -m avfusion.cli train --config "${AVF_CONFIG:-experiments/configs/gpu-base-short.yaml}" \
        --mode "$mode" --out "$run" --max-time-min "$minutes" --num-workers "${w#*=}" \
        --no-export --no-progress >>"$run/train.log" 2>&1 &
      pids+=($!)
    done
    status=0
    for p in "${pids[@]}"; do wait "$p" || status=$?; done
    for w in $WORKERS; do
      mode=${w%=*}
      run=$ROOT/runs/gpu-base-short-$mode
      tail -n 3 "$run/train.log"
      cp "$run/checkpoints/last.ckpt" "$OUT/${mode}_last.ckpt" || status=1
      # the run folder with best.ckpt (highest validation note F1), without the other checkpoints
      tar czf "$OUT/${mode}_run.tgz" -C "$ROOT/runs" --exclude "*/checkpoints/last.ckpt" \
        --exclude "*/checkpoints/latest-*" "gpu-base-short-$mode"
    done
    nvidia-smi --query-gpu=name,memory.used --format=csv || true
    exit $status
    ;;
  *)
    echo "usage: $0 prep | train MINUTES" >&2
    exit 2
    ;;
esac
