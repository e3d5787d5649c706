"""HD-CLIP training (paper, eq. 11) on the labelled degradation set.

``zephir train --config FILE --out DIR [--resume]``, or under ``torchrun`` / ``srun`` for data
parallelism. Deterministic by construction: the batch of step ``s`` and its augmentation are
functions of (seed, s) only, so a run killed and resumed from its last checkpoint ends with the
same weights as an uninterrupted one (on CPU, where kernels are deterministic).
"""
from __future__ import annotations

import csv
import io
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from zephir import data as zdata
from zephir import estimators
from zephir import io as zio
from zephir import seed as zseed
from zephir.degrade.synth import read_manifest
from zephir.estimators import load_checkpoint, save
from zephir.hdclip import distributed
from zephir.hdclip.model import HDCLIP, HDCLIPConfig
from zephir.metrics import estimation

LAST = "last.pt"          # full training state, for --resume
FINAL = "checkpoint.pt"   # the trained model, for predict and evaluation
LOG = "train_log.csv"
VAL = "val_metrics.csv"


@dataclass
class TrainConfig:
    """Optimisation settings; every field is a key of the ``hdclip.train`` config section."""

    steps: int = 1000
    batch_size: int = 64                  # global, over all processes
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 50
    grad_clip: float = 1.0
    lambda_level: float = 0.05            # eq. 11 (level error is on the 0..100 scale)
    lambda_slerp: float = 1.0
    lambda_clip: float = 0.0              # CLIP loss on the semantic branch (needs controller)
    lambda_semantic: float = 0.0          # ground-truth semantic loss (needs controller)
    use_level: bool = True                # table 3 ablations: A = neither, B = level,
    use_slerp: bool = True                # C = slerp, D = both
    eval_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    loader_workers: int = 0
    cache_images: bool = True             # hold the decoded training set in memory

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"hdclip.train: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**d)


# --------------------------------------------------------------------------- data

class LabelledSet(torch.utils.data.Dataset):
    """Samples of a synth manifest: image (3, S, S) in [0, 1], presence (K,), level (K,)."""

    def __init__(self, root: Path, rows: list[dict], types, *, cache: bool = False):
        self.root, self.rows, self.types = Path(root), rows, tuple(types)
        self.present = torch.tensor([[r[f"{t}_level"] != "" for t in self.types] for r in rows],
                                    dtype=torch.float32)
        self.level = torch.tensor([[float(r[f"{t}_level"] or 0.0) for t in self.types]
                                   for r in rows], dtype=torch.float32)
        self._cache = None
        if cache:
            self._cache = torch.stack([self._load(i) for i in range(len(rows))])

    def _load(self, i: int) -> torch.Tensor:
        px = zio.load_image(self.root / self.rows[i]["path"]).pixels
        return torch.from_numpy(px).permute(2, 0, 1).contiguous()  # uint8

    def __len__(self) -> int:
        return len(self.rows)

    def images(self) -> torch.Tensor:
        """Every sample's image, (N, 3, S, S) uint8 (the cache when there is one)."""
        if self._cache is not None:
            return self._cache
        return torch.stack([self._load(i) for i in range(len(self.rows))])

    def __getitem__(self, i: int):
        img = self._cache[i] if self._cache is not None else self._load(i)
        return img, self.present[i], self.level[i], i


def batch_indices(step: int, n: int, batch: int, seed: int) -> np.ndarray:
    """The global batch of ``step``: consecutive slices of per-epoch permutations (stateless)."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        perm = zseed.rng(seed, "epoch", epoch).permutation(n)
        out.extend(perm[pos: pos + batch - len(out)].tolist())
    return np.asarray(out)


def augment(images: torch.Tensor, step: int, seed: int, offset: int = 0) -> torch.Tensor:
    """Random horizontal / vertical flips (degradation-preserving), seeded by (seed, step)."""
    r = zseed.rng(seed, "augment", step)
    flips = r.integers(0, 2, size=(offset + images.shape[0], 2))[offset:]
    out = images.clone()
    for i, (h, v) in enumerate(flips):
        if h:
            out[i] = out[i].flip(-1)
        if v:
            out[i] = out[i].flip(-2)
    return out


def hq_targets(model: HDCLIP, rows: list[dict], sources_index: Path, device) -> torch.Tensor:
    """The frozen CLIP embedding of each sample's clean crop (default semantic target)."""
    by_name = {p.name: p for p in zdata.image_list(sources_index)}
    out = torch.zeros(len(rows), model.embed_dim)
    order = sorted(range(len(rows)), key=lambda i: rows[i]["source"])
    cache: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for start in range(0, len(order), 64):
            chunk = order[start:start + 64]
            crops = []
            for i in chunk:
                r = rows[i]
                if r["source"] not in cache:
                    cache.clear()
                    cache[r["source"]] = zio.load_image(by_name[r["source"]]).pixels
                x, y, c = int(r["crop_x"]), int(r["crop_y"]), int(r["crop_size"])
                crops.append(torch.from_numpy(cache[r["source"]][y:y + c, x:x + c].copy()))
            batch = torch.stack(crops).permute(0, 3, 1, 2).float().div(255).to(device)
            out[chunk] = model.encode_semantic(model.normalize(batch)).float().cpu()
    return out


# --------------------------------------------------------------------------- evaluation

def evaluate(model, dataset: LabelledSet, device) -> dict:
    """Table 2 metrics on single-type samples: type accuracy, MAE / SROCC / PCC on the true type."""
    scores, pred_levels = estimators.predict(model, dataset.images(), device)
    pred_k = scores.argmax(1)
    true_k = dataset.present.argmax(1).numpy()
    true_level = dataset.level.numpy()[np.arange(len(true_k)), true_k]
    pred_level = pred_levels[np.arange(len(true_k)), true_k]
    names = np.asarray(dataset.types)
    return estimation.summarize(names[pred_k], names[true_k], pred_level, true_level,
                                dataset.types)


# --------------------------------------------------------------------------- loop

class _Preempted(Exception):
    pass


#: Settings that do not change the trained weights: a resumed run may change them.
_NOT_IDENTITY = ("eval_every", "checkpoint_every", "loader_workers", "cache_images")


def run_identity(method: str, model_cfg: HDCLIPConfig, cfg: TrainConfig, manifest: Path
                 ) -> dict:
    """What makes two runs the same run: method, model and training settings, and the exact
    labelled set, as flat JSON values. ``--resume`` continues a ``last.pt`` only when they match."""
    flat = {"method": method, "manifest_sha1": zio.file_sha1(manifest),
            **{f"hdclip.{k}": v for k, v in model_cfg.to_dict().items()},
            **{f"train.{k}": v for k, v in asdict(cfg).items() if k not in _NOT_IDENTITY}}
    return json.loads(json.dumps(flat, default=list))  # tuples as lists, as a reload sees them


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row), lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)


def _truncate_csv(path: Path, step: int) -> None:
    """Drop log rows past ``step`` (written after the checkpoint a resume starts from)."""
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    keep = [r for r in rows if int(r["step"]) <= step]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(keep)
    zio.write_text(path, buf.getvalue())


def train(manifest: Path, out: Path, model_cfg: HDCLIPConfig, cfg: TrainConfig, *,
          method: str = "hdclip", sources: Path | None = None, resume: bool = False,
          device: str = "auto", progress: bool = True, evaluate_into: Path | None = None
          ) -> dict:
    """Train HD-CLIP (or a baseline of :mod:`zephir.estimators`); returns the final validation
    metrics. Writes ``out/`` (see module doc). A method with nothing to train (CLIP zero-shot)
    runs no step and is saved and evaluated all the same. With ``evaluate_into``, the final
    model is also evaluated on the validation split (singles and mixtures) and the files of
    :func:`zephir.estimators.evaluate_checkpoint` are written there."""
    out = Path(out)
    world, dev = distributed.init(device)
    if cfg.batch_size % world.size:
        raise ValueError(f"hdclip.train.batch_size {cfg.batch_size} is not divisible by the "
                         f"{world.size} processes")
    local_batch = cfg.batch_size // world.size
    zseed.seed_everything(cfg.seed)
    torch.use_deterministic_algorithms(dev.type == "cpu", warn_only=True)
    model = estimators.build(method, model_cfg).to(dev)
    size = model.image_size
    train_rows = read_manifest(manifest, "train")
    val_rows = read_manifest(manifest, "val", single_only=True)
    crop = int(train_rows[0]["crop_size"])
    if crop != size:
        raise ValueError(f"{manifest}: samples are {crop}px crops but {model_cfg.arch} takes "
                         f"{size}px images; set synth.crop_size to {size}")
    root = Path(manifest).parent
    train_set = LabelledSet(root, train_rows, model_cfg.types, cache=cfg.cache_images)
    needs_val = evaluate_into is None or cfg.eval_every < cfg.steps
    val_set = (LabelledSet(root, val_rows, model_cfg.types, cache=True)
               if val_rows and needs_val else None)
    semantic = method == "hdclip" and (cfg.lambda_semantic > 0 or cfg.lambda_clip > 0)
    targets = None
    if semantic:
        if not model_cfg.controller:
            raise ValueError("hdclip.train.lambda_semantic / lambda_clip need "
                             "hdclip.model.controller: true (the frozen tower cannot move)")
        if sources is None:
            raise ValueError("the semantic losses need --sources (the source images' index)")
        targets = hq_targets(model, train_rows, sources, dev)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        cfg = replace(cfg, steps=0)
        params = [torch.nn.Parameter(torch.zeros(()))]  # an optimizer needs one; never stepped
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    start = 0
    identity = run_identity(method, model_cfg, cfg, manifest)
    saved = load_checkpoint(out / LAST, dev) if resume and (out / LAST).exists() else None
    if saved is not None and saved.get("run") != identity:
        if world.main:
            before = saved.get("run")
            before = before if isinstance(before, dict) else {}
            changed = sorted(k for k in before.keys() | identity.keys()
                             if before.get(k) != identity.get(k))
            why = f"{', '.join(changed)} changed" if before else "it records no run identity"
            print(f"{out / LAST} belongs to another run ({why}); training from the start",
                  file=sys.stderr)
        saved = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        start = saved["step"]
        if world.main:
            _truncate_csv(out / LOG, start)
            _truncate_csv(out / VAL, start)
    elif world.main:
        for name in (LOG, VAL):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if world.distributed and dev.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # ResNet towers
    ddp = (DistributedDataParallel(model, find_unused_parameters=model_cfg.controller
                                   and not semantic)
           if world.distributed and cfg.steps > 0 else model)

    def state(step: int) -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "step": step, "method": method, "run": identity,
                "hdclip": model_cfg.to_dict(),
                "train": asdict(cfg), "random_init": model_cfg.random_init}

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGUSR1)}
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train",
               disable=not (progress and world.main))
    t0 = time.perf_counter()
    metrics: dict = {}
    try:
        for step in bar:
            idx = batch_indices(step, len(train_set), cfg.batch_size, cfg.seed)
            mine = idx[world.rank * local_batch:(world.rank + 1) * local_batch]
            items = [train_set[int(i)] for i in mine]
            imgs = torch.stack([it[0] for it in items])
            imgs = augment(imgs, step, cfg.seed, world.rank * local_batch)
            imgs = imgs.to(dev).float().div(255)
            present = torch.stack([it[1] for it in items]).to(dev)
            level = torch.stack([it[2] for it in items]).to(dev)
            tgt = targets[torch.as_tensor(mine)].to(dev) if targets is not None else None
            with autocast:
                output = ddp(imgs, semantic=semantic)
                terms = model.loss_terms(output, present, level, cfg, tgt)
                loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            done = step + 1
            if world.main:
                row = {"step": done, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                       "grad_norm": gnorm.item(), "seconds": time.perf_counter() - t0}
                row.update({f"loss_{k}": v.item() for k, v in terms.items()})
                _append_csv(out / LOG, row)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if done == cfg.steps:
                due = evaluate_into is None  # else the full evaluation below gives the row
            else:
                due = done % cfg.eval_every == 0
            if val_set is not None and world.main and due:
                metrics = evaluate(model, val_set, dev)
                _append_csv(out / VAL, {"step": done, **metrics})
            if world.main and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                save(out / LAST, state(done))
            if stop["signal"] is not None:
                if world.main:
                    save(out / LAST, state(done))
                raise _Preempted(stop["signal"])
    except _Preempted as exc:
        bar.close()
        distributed.barrier(world)
        distributed.shutdown(world)
        for s, h in old.items():
            signal.signal(s, h)
        raise SystemExit(128 + int(exc.args[0])) from None
    bar.close()
    for s, h in old.items():
        signal.signal(s, h)
    if world.main and evaluate_into is None and not metrics and val_set is not None:
        metrics = evaluate(model, val_set, dev)  # nothing trained, or resumed at the end
    if world.main:
        final = state(cfg.steps)
        del final["optimizer"], final["scheduler"]
        if evaluate_into is not None:
            result = estimators.write_evaluation(model, final, out / FINAL, manifest,
                                                 evaluate_into, device=dev)
            metrics = result["metrics"]["single"]
            _append_csv(out / VAL, {"step": cfg.steps, **metrics})
        final["metrics"] = metrics
        save(out / FINAL, final)
        zio.write_text(out / "metrics.json", json.dumps(
            {"step": cfg.steps, "method": method, "random_init": model_cfg.random_init,
             "arch": model_cfg.arch,
             **metrics}, indent=2, sort_keys=True) + "\n")
    distributed.barrier(world)
    distributed.shutdown(world)
    return metrics
