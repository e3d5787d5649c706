"""Labelled-sample throughput of `zephir synth` against the bare cv2/NumPy operations.

Measures, in one run and on the same 512x512 crops of bundled photos:
  * baseline: the bare calls (cv2 Gaussian blur, NumPy noise, cv2 JPEG round trip, two cv2
    resizes) on an in-memory crop, plus a PNG encode and file write per sample;
  * zephir:   `synthesize()` end to end (load, crop, level draw, operators, PNG, manifest),
    with 1 and 2 worker processes.
Prints samples/s and the ratio of zephir's time per sample to the baseline's (the pipeline's
overhead; goal <= 1.2x on 1 process).

    python benchmarks/synth.py [--images 6] [--levels 6] [--repeat 3]
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from zephir import datasets
from zephir.degrade import levels, synth

CROP = 512


def baseline(images: list[np.ndarray], spec: synth.SynthSpec, out: Path) -> int:
    """The same work as synth, written as bare cv2/NumPy calls."""
    r = np.random.default_rng(0)
    n = 0
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        for kind in spec.types:
            for j in range(spec.levels_per_type):
                y, x = r.integers(0, h - CROP + 1), r.integers(0, w - CROP + 1)
                crop = img[y:y + CROP, x:x + CROP].astype(np.float32) / 255.0
                v = levels.denormalize(kind, r.uniform(0, 100))
                if kind == "blur":
                    rad = math.ceil(4 * v)
                    o = cv2.GaussianBlur(crop, (2 * rad + 1, 2 * rad + 1), v)
                elif kind == "noise":
                    o = crop + r.standard_normal(crop.shape, dtype=np.float32) * np.float32(v / 255)
                elif kind == "jpeg":
                    u8 = np.clip(np.rint(crop * 255), 0, 255).astype(np.uint8)
                    _, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(round(v))])
                    o = cv2.imdecode(buf, cv2.IMREAD_COLOR).astype(np.float32) / 255
                else:
                    s = cv2.resize(crop, (round(CROP / v), round(CROP / v)),
                                   interpolation=cv2.INTER_CUBIC)
                    o = cv2.resize(s, (CROP, CROP), interpolation=cv2.INTER_CUBIC)
                u8 = np.clip(np.rint(o * 255), 0, 255).astype(np.uint8)
                _, png = cv2.imencode(".png", u8, [cv2.IMWRITE_PNG_COMPRESSION, 3])
                (out / f"{i}_{kind}_{j}.png").write_bytes(png.tobytes())
                n += 1
    return n


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6, help="bundled photos to use (>= 512 px)")
    ap.add_argument("--levels", type=int, default=6, help="levels per type and image")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    names = [n for n in datasets.EMBEDDED if min(datasets.embedded_image(n).shape[:2]) >= CROP]
    names = names[: args.images]
    spec = synth.SynthSpec(levels_per_type=args.levels, crop_size=CROP, val_fraction=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        paths = datasets.write_embedded(src, names)
        images = [datasets.embedded_image(n) for n in names]
        n = len(images) * len(spec.types) * spec.levels_per_type
        (tmp / "base").mkdir()
        t_base = best_of(lambda: baseline(images, spec, tmp / "base"), args.repeat)
        results = {}
        for workers in (1, 2):
            def run(w=workers):
                out = tmp / f"z{w}"
                if out.exists():
                    import shutil
                    shutil.rmtree(out)
                synth.synthesize(paths, out, spec, workers=w, progress=False)
            results[workers] = best_of(run, args.repeat)
    print(f"{n} labelled samples of {CROP}x{CROP} from {len(images)} photos "
          f"(best of {args.repeat})")
    print(f"{'':28s}{'samples/s':>12s}{'ratio vs bare':>16s}")
    print(f"{'bare cv2/numpy, 1 process':28s}{n / t_base:12.1f}{1.0:16.2f}")
    for w, t in results.items():
        print(f"{f'zephir synth, {w} process(es)':28s}{n / t:12.1f}{t / t_base:16.2f}")
    print(f"pipeline overhead on 1 process: {results[1] / t_base:.2f}x (goal <= 1.2x); "
          f"2-process speed-up: {results[1] / results[2]:.2f}x")


if __name__ == "__main__":
    main()
