#!/bin/bash
# The gpu-base-short run on a GPU machine lent through the device tool (from the repo root
# there; it has PyTorch and Lightning, not our audio and MIDI packages, so those travel as
# wheels in .gpu/whl). Stages, each one call of at most 10 minutes on one warm machine:
#   bash experiments/gpu-base/device.sh unpack1        # wheels, frame caches; smoke test
#   bash experiments/gpu-base/device.sh train 7.5      # audio and noise, then train to 7.5 min
#   bash experiments/gpu-base/device.sh train 16       # resume to 16 min in all, export
# What it returns under $OUT: each mode's log, checkpoints and run folder (logs, model).
set -euo pipefail
export PYTHONUNBUFFERED=1
if [ ! -d /root/site/librosa ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /root/site .gpu/whl/*.whl
fi
export PYTHONPATH=/root/site:$PWD
mkdir -p data /root/avdata /root/runs
ln -sfn /root/avdata/corpus data/corpus
ln -sfn /root/avdata/noise data/noise
OUT=${OUT:-/tmp/out}
case "$1" in
  unpack1)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 experiments/gpu-base/transfer.py unpack --src .gpu --dest /root/avdata --part 1
    python3 experiments/gpu-base/smoke.py --device cuda
    ;;
  train)
    if [ ! -f /root/avdata/.part2 ]; then
      python3 experiments/gpu-base/transfer.py unpack --src .gpu --dest /root/avdata --part 2
      touch /root/avdata/.part2
    fi
    for mode in fusion audio; do
      python3 -m avfusion.cli train --config experiments/configs/gpu-base-short.yaml \
        --mode "$mode" --out /root/runs/gpu-base-short-$mode --max-time-min "$2" --no-progress \
        >>"/root/runs/$mode.log" 2>&1 &
    done
    wait || true
    for mode in fusion audio; do
      r=/root/runs/gpu-base-short-$mode
      cp "/root/runs/$mode.log" "$OUT/$mode.log"
      cp "$r/checkpoints/best.ckpt" "$OUT/${mode}_best.ckpt" || true
      cp "$r/checkpoints/last.ckpt" "$OUT/${mode}_last.ckpt" || true
      tar czf "$OUT/${mode}_run.tgz" -C /root/runs --exclude checkpoints "gpu-base-short-$mode"
    done
    nvidia-smi --query-gpu=name,memory.used --format=csv
    ;;
esac
