#!/usr/bin/env bash
# One GPU, one run: the CUDA paths' tests, the benchmarks' GPU ratios, and HD-CLIP on
# config/embedded-gpu.yaml (synthesis, training, evaluation on the held-out photos, then the
# transfer evaluation of issue 14 for it and for the same model trained on the paper's
# fixed synthesis pipeline), each stage timed. Everything goes under WORK (default
# gpu-check/); the numbers a run prints are what README.md reports, with the date of the run.
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
    echo "-- $((SECONDS - t))s, exit $rc: $*" | cut -c1-240
}

stage device
$py - <<'PY' | tee "$work/device.txt"
import torch
print("torch", torch.__version__, "|",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU: cpu")
PY

stage "CUDA tests"
timed $py -m pytest -q -p no:cacheprovider -m "slow or not slow" \
    tests/training/test_cuda.py tests/training/test_batches.py \
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
    $py -c 'import sys, yaml; from zephir import datasets
cfg = yaml.safe_load(open(sys.argv[1]))
datasets.write_embedded(sys.argv[2], cfg["datasets"][cfg["train_set"]]["images"])' \
        "$config" "$photos" || echo "-- training photos unwritable from $config"
fi
(
    timed $py -m zephir synth --config "$config" --images "$photos" --out "$work/synth" --quiet
    timed $py -m zephir train --config "$config" --manifest "$work/synth/manifest.csv" \
        --out "$work/hdclip" --evaluate --quiet
) 2>&1 | grep -v "initialized randomly" | tee "$work/embedded-gpu.txt"
cat "$work/hdclip/metrics.json"

stage "transfer evaluation (issue 14): HD-CLIP as configured and on the fixed pipeline"
dev=cpu
$py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && dev=cuda
tphotos=$work/transfer-photos
# the transfer set's photos, and the settings that rule transfer_set passes (estimation.smk)
settings=$($py -c 'import sys, yaml; from zephir import datasets
cfg = yaml.safe_load(open(sys.argv[1]))
t = cfg["estimation"]["transfer"]
datasets.write_embedded(sys.argv[2], cfg["datasets"][t["set"]]["images"])
print(2 if sys.argv[3] == "1" else t["per_type"], cfg["synth"]["crop_size"], t["seed"],
      *cfg["synth"]["types"])' "$config" "$tphotos" "$smoke") \
    || echo "-- transfer photos or settings unreadable from $config"
read -r per_type crop seed types <<< "$settings"
(
    # shellcheck disable=SC2086  # $types: one argument per type
    timed $py -m zephir transfer-set --images "$tphotos" --out "$work/transfer-set" \
        --per-type "$per_type" --seed "$seed" --types $types --train-crop-size "$crop"
    timed $py -m zephir synth --config "$config" --no-randomise --images "$photos" \
        --out "$work/synth-fixed" --quiet
    timed $py -m zephir train --config "$config" --manifest "$work/synth-fixed/manifest.csv" \
        --out "$work/hdclip-fixed" --evaluate --quiet
    for model in hdclip hdclip-fixed; do
        timed $py -m zephir evaluate --checkpoint "$work/$model" --transfer \
            --manifest "$work/transfer-set/manifest.csv" --out "$work/$model/transfer" \
            --device "$dev"
    done
    $py - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
print("HD-CLIP (random-init weights where marked *), single-type samples")
print("model              samples     type acc   SROCC: blur  noise  jpeg   downsample")
for model in ("hdclip", "hdclip-fixed"):
    for name, path in (("validation", "eval"), ("transfer", "transfer")):
        f = work / model / path / "metrics.json"
        if not f.exists():
            print(f"{model:18s} {name:11s} missing: {f}")
            continue
        result = json.loads(f.read_text())
        m, star = result["metrics"]["single"], "*" if result.get("random_init") else ""
        sroccs = "  ".join(f"{m.get(k + '_srocc', float('nan')):5.3f}"
                           for k in ("blur", "noise", "jpeg", "downsample"))
        print(f"{model + star:18s} {name:11s} {100 * m['type_acc']:5.1f} %     {sroccs}")
PY
) 2>&1 | grep -v "initialized randomly" | tee "$work/transfer.txt"

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
