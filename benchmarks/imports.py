"""What `zephir predict` and `zephir restore` pay before their first image: imports (by package,
torch's share) and the wall clock of the whole command.

Each command runs in fresh processes (`python -X importtime -m zephir ...`, OMP_NUM_THREADS=1 as
the workflow's restore jobs): `--help`, then one and four images; per image is (four - one) / 3
and "before the first image" is one - per image. `predict` reads a random-init tiny HD-CLIP
checkpoint (zephir-tiny-rn) and 128-px photos, `restore` runs the tiny random-init backbone in
baseline mode on 32-px LQ photos (the embedded default's restoration). The imports are those of
the one-image run: `-X importtime`'s self times summed by top-level package, and torch's with
what it imports first. Last, what `import bitsandbytes` costs once torch is imported, which
`restore` paid (diffusers imported it) before zephir kept it out (zephir/quiet.py). Runs are
interleaved round by round; figures are medians of --repeat rounds.

    python benchmarks/imports.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \| ( *)(\S+)")
# packages charged with what they import first (their modules' self times and those of the
# modules imported beneath them, by `-X importtime`'s nesting)
WHOLE = ("torch", "bitsandbytes")
BNB = "python -c 'import torch, bitsandbytes'"


def inputs(root: Path) -> dict[str, list[str]]:
    """Argument lists of each command's runs (help, one image, four images)."""
    import cv2
    import torch

    from zephir import checkpoints, datasets, estimator_registry
    from zephir import io as zio
    from zephir.hdclip.model import HDCLIPConfig

    names = ["chelsea", "coffee", "astronaut", "rocket"]
    for name in names:
        img = datasets.embedded_image(name)
        y, x = img.shape[0] // 2 - 64, img.shape[1] // 2 - 64
        hq = img[y:y + 128, x:x + 128]
        zio.write_png(root / "hq" / f"{name}.png", hq)
        for n in (1, 4):
            if names.index(name) < n:
                zio.write_png(root / f"lq{n}" / f"{name}.png",
                              cv2.resize(hq, (32, 32), interpolation=cv2.INTER_AREA))
    torch.manual_seed(0)
    cfg = HDCLIPConfig(arch="zephir-tiny-rn")
    ckpt = checkpoints.save_model(root / "hdclip", estimator_registry.build("hdclip", cfg),
                                  {"method": "hdclip", "hdclip": cfg.to_dict()})
    hq = [str(root / "hq" / f"{name}.png") for name in names]
    config = str(REPO / "config" / "config.yaml")

    def restore(n: int) -> list[str]:
        return ["restore", "--config", config, "--lq", str(root / f"lq{n}"), "--out",
                str(root / f"out-{n}-{{run}}"), "--mode", "baseline", "--quiet"]

    return {"predict --help": ["predict", "--help"],
            "predict, 1 image": ["predict", "--checkpoint", str(ckpt), hq[0]],
            "predict, 4 images": ["predict", "--checkpoint", str(ckpt), *hq],
            "restore --help": ["restore", "--help"],
            "restore, 1 image": restore(1), "restore, 4 images": restore(4)}


def import_seconds(importtime: str) -> dict[str, float]:
    """Self seconds by top-level package, and for each WHOLE package "<name> whole": its
    modules' and those imported beneath them. `-X importtime` prints a module after the ones it
    imported, one level deeper, so read backwards each line's ancestors are on the stack."""
    seconds: dict[str, float] = defaultdict(float)
    stack: list[tuple[int, str]] = []
    for m in reversed(list(LINE.finditer(importtime))):
        self_s, depth, name = int(m.group(1)) / 1e6, len(m.group(2)), m.group(3)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        stack.append((depth, name.split(".")[0]))
        seconds[name.split(".")[0]] += self_s
        for pkg in WHOLE:
            if any(top == pkg for _, top in stack):
                seconds[f"{pkg} whole"] += self_s
    return seconds


def run(args: list[str], prefix: list[str]) -> tuple[float, dict[str, float]]:
    """Wall seconds of one run and its :func:`import_seconds`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", *prefix, *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    wall = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return wall, import_seconds(done.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = inputs(Path(tmp))
        cases = {**{k: (v, ["-m", "zephir"]) for k, v in runs.items()},
                 BNB: ([], ["-c", "import torch, bitsandbytes"])}
        walls: dict[str, list[float]] = defaultdict(list)
        imports: dict[str, list[dict[str, float]]] = defaultdict(list)
        for i in range(opts.repeat):
            for name, (args, prefix) in cases.items():
                wall, by_package = run([a.replace("{run}", str(i)) for a in args], prefix)
                walls[name].append(wall)
                imports[name].append(by_package)
    med = {name: statistics.median(w) for name, w in walls.items()}
    print("| run | wall s | imports s | torch, with what it imports first s |")
    print("|---|---|---|---|")
    def median(name: str, key: str | None) -> float:
        """Median over the rounds of one import figure (None: all imports' self seconds)."""
        return statistics.median(sum(v for k, v in p.items() if not k.endswith(" whole"))
                                 if key is None else p.get(key, 0.0) for p in imports[name])

    for name in cases:
        print(f"| {name} | {med[name]:.2f} | {median(name, None):.2f} | "
              f"{median(name, 'torch whole'):.2f} |")
    for cmd in ("predict", "restore"):
        per_image = (med[f"{cmd}, 4 images"] - med[f"{cmd}, 1 image"]) / 3
        print(f"\n{cmd}: {per_image:.2f} s per image, {med[f'{cmd}, 1 image'] - per_image:.2f} s "
              f"before the first image (--help: {med[f'{cmd} --help']:.2f} s)")
        packages: dict[str, list[float]] = defaultdict(list)
        for p in imports[f"{cmd}, 1 image"]:
            for pkg in set().union(*imports[f"{cmd}, 1 image"]):
                packages[pkg].append(p.get(pkg, 0.0))
        top = sorted((k for k in packages if not k.endswith(" whole")),
                     key=lambda k: -statistics.median(packages[k]))[:10]
        print("  imports by package (median s): " + ", ".join(
            f"{k} {statistics.median(packages[k]):.2f}" for k in top))
    print(f"\nimport bitsandbytes after torch (what diffusers did in restore before zephir kept "
          f"it out): {median(BNB, 'bitsandbytes whole'):.2f} s")


if __name__ == "__main__":
    main()
