#!/usr/bin/env bash
# One GPU, one run: the CUDA paths' tests, the benchmarks' GPU ratios, and HD-CLIP on
# config/embedded-gpu.yaml (synthesis, training, evaluation on the held-out photos), each
# stage timed. Everything goes under WORK (default gpu-check/); the numbers a run prints are
# what README.md reports, with the date of the run.
#
#   bash benchmarks/gpu.sh [WORK]
#
# PHOTOS=folder: the bundled photos as files (else written from the installed packages).
# SMOKE=1: the same stages at toy sizes on whatever device there is (to try this script).
set -uo pipefail  # a failing stage is reported, the next one still runs
work=${1:-gpu-check}
py=$(command -v "${PYTHON:-python3}")
py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py")
smoke=${SMOKE:-0}
mkdir -p "$work"
export PYTHONUNBUFFERED=1

stage() { echo; echo "== $1 ($(date -u +%H:%M:%S))"; }
limit=${STAGE_TIMEOUT:-900}
timed() {
    local t=$SECONDS rc=0
    timeout "$limit" "$@" || rc=$?
    echo "-- $((SECONDS - t))s, exit $rc: $*" | cut -c1-160
}

stage device
$py - <<'PY' | tee "$work/device.txt"
import torch
print("torch", torch.__version__, "|",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU: cpu")
PY

stage "CUDA tests"
timed $py -m pytest -q -p no:cacheprovider -m "slow or not slow" \
    tests/training/test_cuda.py tests/training/test_data.py \
    2>&1 | tee "$work/tests.txt"

stage "HD-CLIP, config/embedded-gpu.yaml"
config=config/embedded-gpu.yaml
if [ "$smoke" = 1 ]; then
    $py - "$work/smoke.yaml" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open("config/embedded-gpu.yaml"))
cfg["synth"].update(levels_per_type=4, mixtures_per_image=1, workers=2)
cfg["hdclip"]["train"].update(steps=6, batch_size=16, warmup=2, eval_every=3,
                              checkpoint_every=3)
yaml.safe_dump(cfg, open(sys.argv[1], "w"))
PY
    config=$work/smoke.yaml
fi
photos=${PHOTOS:-}
if [ -z "$photos" ]; then
    photos=$work/photos
    $py -c "import sys, yaml; from zephir import data
cfg = yaml.safe_load(open('$config'))
data.write_embedded(sys.argv[1], cfg['datasets']['embedded']['images'])" "$photos"
fi
(
    timed $py -m zephir synth --config "$config" --images "$photos" --out "$work/synth" --quiet
    timed $py -m zephir train --config "$config" --manifest "$work/synth/manifest.csv" \
        --out "$work/hdclip" --evaluate --quiet
) 2>&1 | grep -v "initialized randomly" | tee "$work/embedded-gpu.txt"
cat "$work/hdclip/metrics.json"

stage benchmarks
if [ "$smoke" = 1 ]; then
    bench=(--batch 8 --repeat 2 --arch zephir-tiny-rn)
    trainer=(--trainer --batch 8 --steps 9 --samples 48 --workers 2 --arch zephir-tiny-rn)
    guidance=(--latent 16 --repeat 3)
else
    bench=(--batch 128 --arch zephir-tiny-rn ViT-B-32)
    trainer=(--trainer --batch 128 --workers 8 --samples 2048 --arch zephir-tiny-rn ViT-B-32)
    guidance=()
fi
(
    cd benchmarks
    timed $py hdclip.py "${bench[@]}"
    timed $py hdclip.py "${trainer[@]}"
    timed $py guidance.py "${guidance[@]}"
) 2>&1 | grep -v "initialized randomly" | tee "$work/benchmarks.txt"
