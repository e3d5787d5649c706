"""The trainer of every estimator (paper, eq. 11): HD-CLIP, the baselines and the ablations.

``zephir train --config FILE --out DIR [--resume]``, or under ``torchrun`` / ``srun`` for data
parallelism. Deterministic by construction: the batch of step ``s`` and its augmentation are
functions of (seed, s) only, so a run killed and resumed from its last checkpoint ends with the
same weights as an uninterrupted one (on CPU, where kernels are deterministic). The batch is
drawn without regard to type (``batch_size``) or type-balanced (``batch_per_type``, paper,
section 4.1), and the budget is ``steps`` or ``epochs`` of the train split
(:meth:`TrainConfig.schedule` derives the other; the checkpoint records both).

Files under ``out/``: ``last.pt`` (the training state: weights, optimiser, scheduler, step,
the run's identity and its whole log; tensors and plain values only, read back with
``weights_only=True``), and, written whole at the end from that state, the trained model as a
Hub-layout folder (``model.safetensors``, ``config.json``, the model card ``README.md``:
:mod:`zephir.checkpoints`), ``train_log.csv`` (one row per step), ``val_metrics.csv`` (one row
per validation) and ``metrics.json``. A run resumed at its last step trains nothing and writes every
one of them again, so that a workflow that lost any of them gets them all back.
"""
from __future__ import annotations

import contextlib
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

from zephir import checkpoints, estimator_evaluation, estimator_registry
from zephir import io as zio
from zephir import seed as zseed
from zephir.config import train_budget_problem
from zephir.degrade.synth import read_manifest
from zephir.estimator_interface import level_scale
from zephir.hdclip.model import HDCLIPConfig
from zephir.metrics import estimation
from zephir.schema import default
from zephir.training import distributed
from zephir.training.batches import (Composition, LabelledSet, SemanticTable, StepBatches,
                                     batches, caption_of, compose, flip, flip_states, hq_targets,
                                     read_captions)

LAST = "last.pt"          # full training state, for --resume
FINAL = checkpoints.WEIGHTS   # the trained model's weights; out/ is its folder
LOG = "train_log.csv"
VAL = "val_metrics.csv"


def _d(key: str):
    return default(f"hdclip.train.{key}")


@dataclass
class TrainConfig:
    """Optimisation settings: the ``hdclip.train`` config section (defaults from the schema)."""

    steps: int | None = _d("steps")               # the budget: steps, or
    epochs: float | None = _d("epochs")           # epochs of the train split (steps derived)
    batch_size: int | None = _d("batch_size")     # global, over all processes, any type; or
    batch_per_type: int | None = _d("batch_per_type")  # type-balanced (size derived)
    lr: float = _d("lr")
    weight_decay: float = _d("weight_decay")
    warmup: int = _d("warmup")
    grad_clip: float = _d("grad_clip")
    lambda_level: float = _d("lambda_level")      # eq. 11 (level error on the 0..100 scale)
    lambda_slerp: float = _d("lambda_slerp")
    lambda_clip: float = _d("lambda_clip")        # CLIP loss on the semantic branch
    lambda_semantic: float = _d("lambda_semantic")  # ground-truth semantic loss
    use_level: bool = _d("use_level")             # table 3 ablations: A = neither, B = level,
    use_slerp: bool = _d("use_slerp")             # C = slerp, D = both
    eval_every: int = _d("eval_every")
    checkpoint_every: int = _d("checkpoint_every")
    seed: int = _d("seed")
    cache_images: bool = _d("cache_images")       # hold the decoded training set in memory
    loader_workers: int = _d("loader_workers")    # processes decoding batches (uncached set)
    precision: str = _d("precision")              # auto = bf16 autocast on CUDA, else fp32

    def check(self) -> TrainConfig:
        """This config, when it sets one of steps and epochs and one of batch_size and
        batch_per_type (the other of each null); else a ValueError that says which."""
        problem = train_budget_problem(asdict(self))
        if problem:
            raise ValueError(problem)
        return self

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"hdclip.train: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**d).check()

    def with_steps(self, steps: int) -> TrainConfig:
        """This config with a budget of ``steps`` (an ablation's or a baseline's own)."""
        return replace(self, steps=steps, epochs=None)

    def schedule(self, present: torch.Tensor, types) -> tuple[TrainConfig, Composition | None]:
        """The run's batch and budget on a train split with presence labels ``present``:
        ``batch_per_type`` gives the type-balanced :class:`Composition` and its size as
        ``batch_size``; ``epochs`` gives ``steps = ceil(epochs * N / batch_size)``, N the split's
        samples. The returned config has both set; the checkpoint and the run's identity
        record it."""
        comp = None
        cfg = self.check()
        if self.batch_per_type is not None:
            comp = compose(present, types, self.batch_per_type)
            cfg = replace(cfg, batch_size=comp.batch)
        if self.epochs is not None:
            per_epoch = len(present) / cfg.batch_size
            cfg = replace(cfg, steps=max(1, math.ceil(round(self.epochs * per_epoch, 9))))
        return cfg, comp

    def terms(self, semantic: bool) -> list[str]:
        """The terms of eq. 11 this run trains with. Ablation A (neither L_level nor L_slerp)
        keeps the embeddings aligned with their type's anchors by the ``align`` term (see
        docs/method.md); B, C and D do not use it."""
        align = not (self.use_level or self.use_slerp)
        return (["conf"] + ["align"] * align + ["level"] * self.use_level
                + ["slerp"] * self.use_slerp
                + ["semantic"] * (semantic and self.lambda_semantic > 0)
                + ["clip"] * (semantic and self.lambda_clip > 0))


#: Terms that are means over the present (sample, type) pairs of a rank's batch; their number
#: differs per rank, so each is scaled by :func:`distributed.global_share`.
PER_PRESENT = ("align", "level", "slerp")


def weighted(terms: dict[str, torch.Tensor], cfg: TrainConfig, share: torch.Tensor
             ) -> dict[str, torch.Tensor]:
    """Eq. 11's weighting: ``L_conf + l_level L_level + l_slerp L_slerp`` (+ the semantic
    terms); a term without a lambda (a baseline's single objective) keeps weight 1."""
    lambdas = {"level": cfg.lambda_level, "slerp": cfg.lambda_slerp,
               "semantic": cfg.lambda_semantic, "clip": cfg.lambda_clip}
    out = {}
    for name, value in terms.items():
        if name in PER_PRESENT:
            value = lambdas.get(name, 1.0) * share * value
        elif name in lambdas:
            value = lambdas[name] * value
        out[name] = value
    return out


# --------------------------------------------------------------------------- evaluation

def validate(model, dataset: LabelledSet, device) -> dict:
    """Table 2 metrics on single-type samples: type accuracy, MAE / SROCC / PCC on the true type."""
    est = estimator_evaluation.estimate(model, dataset.images(), device)
    true_k = dataset.present.argmax(1).numpy()
    true_level = dataset.level.numpy()[np.arange(len(true_k)), true_k]
    pred_level = est.levels.numpy()[np.arange(len(true_k)), true_k]
    names = np.asarray(dataset.types)
    return estimation.summarize(estimation.predicted_types(est.scores.numpy(), dataset.types),
                                names[true_k], pred_level, true_level, dataset.types,
                                level_scale=level_scale(model))


# --------------------------------------------------------------------------- run identity

#: Settings that do not change the trained weights: a resumed run may change them.
_NOT_IDENTITY = ("eval_every", "checkpoint_every", "cache_images", "loader_workers")


def clip_weights_identity(checkpoint: str | None) -> str | None:
    """The CLIP weights a run starts from, by content: ``sha1:<digest>`` of a local file, the
    open_clip pretrained tag otherwise, None for random init."""
    if checkpoint is None:
        return None
    if Path(checkpoint).is_file():
        return f"sha1:{zio.file_sha1(Path(checkpoint))}"
    return f"open_clip:{checkpoint}"


def run_identity(method: str, model_cfg: HDCLIPConfig, cfg: TrainConfig, manifest: Path, *,
                 world_size: int = 1, precision: str = "fp32", semantic_target: str = "none"
                 ) -> dict:
    """What makes two runs the same run: method, model and training settings, the CLIP
    weights' content, the exact labelled set, the number of processes, the arithmetic and the
    semantic target, as flat JSON values. ``--resume`` continues a ``last.pt`` only when they
    match."""
    flat = {"method": method, "manifest_sha1": zio.file_sha1(manifest),
            "clip_weights": clip_weights_identity(model_cfg.checkpoint),
            "world_size": world_size, "precision": precision, "semantic_target": semantic_target,
            **{f"hdclip.{k}": v for k, v in model_cfg.to_dict().items()},
            **{f"train.{k}": v for k, v in asdict(cfg).items() if k not in _NOT_IDENTITY}}
    return json.loads(json.dumps(flat, default=list))  # tuples as lists, as a reload sees them


def resolve_precision(precision: str, dev: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, fp32 elsewhere; an explicit choice is kept."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"hdclip.train.precision: {precision!r} is not auto, bf16 or fp32")
    if precision == "auto":
        return "bf16" if dev.type == "cuda" else "fp32"
    return precision


def _autocast(precision: str, dev: torch.device):
    if precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _resumable(path: Path, identity: dict, device, main: bool) -> dict | None:
    """The training state at ``path`` when it belongs to the run ``identity``, else None (and,
    on the main process, a line on stderr that says what changed)."""
    if not path.exists():
        return None
    saved = checkpoints.load_state(path, device)
    if saved.get("run") == identity:
        return saved
    if main:
        before = saved.get("run")
        before = before if isinstance(before, dict) else {}
        changed = sorted(k for k in before.keys() | identity.keys()
                         if before.get(k) != identity.get(k))
        why = f"{', '.join(changed)} changed" if before else "it records no run identity"
        print(f"{path} belongs to another run ({why}); training from the start",
              file=sys.stderr)
    return None


# --------------------------------------------------------------------------- loop

class _Preempted(Exception):
    pass


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def _csv_text(rows: list[dict]) -> str:
    """Rows of one log as CSV (the header from the first row; empty log, empty file)."""
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def train(manifest: Path, out: Path, model_cfg: HDCLIPConfig, cfg: TrainConfig, *,
          method: str = "hdclip", sources: Path | None = None, captions: Path | None = None,
          val_manifest: Path | None = None, resume: bool = False, device: str = "auto",
          progress: bool = True, evaluate_into: Path | None = None) -> dict:
    """Train HD-CLIP (or a baseline of :mod:`zephir.estimator_registry`); returns the final
    validation metrics. Writes ``out/`` (see module doc). A method with nothing to train (CLIP
    zero-shot) runs no step and is saved and evaluated all the same.

    ``manifest``'s train split is trained on; the val split of ``val_manifest`` (default: the
    same manifest) validates. ``sources`` (the clean images' index) gives the semantic losses
    their targets, ``captions`` (DA-CLIP's CSV layout) the CLIP loss its texts. With
    ``evaluate_into``, the final model is also evaluated on the validation split (singles and
    mixtures) and the files of :func:`zephir.estimator_evaluation.write_evaluation` are written
    there."""
    out = Path(out)
    val_manifest = Path(val_manifest or manifest)
    world, dev = distributed.init(device)
    precision = resolve_precision(cfg.precision, dev)
    zseed.seed_everything(cfg.seed)
    torch.use_deterministic_algorithms(dev.type == "cpu", warn_only=True)
    # deterministic mode also fills every new tensor with NaN to expose reads of unwritten
    # memory; no kernel here reads any, and the fill costs memory bandwidth every step
    torch.utils.deterministic.fill_uninitialized_memory = False
    model = estimator_registry.build(method, model_cfg).to(dev)
    size = model.image_size
    train_rows = read_manifest(manifest, "train")
    val_rows = read_manifest(val_manifest, "val", single_only=True)
    crop = int(train_rows[0]["crop_size"])
    if crop != size:
        raise ValueError(f"{manifest}: samples are {crop}px crops but {model_cfg.arch} takes "
                         f"{size}px images; set synth.crop_size to {size}")
    train_set = LabelledSet(Path(manifest).parent, train_rows, model_cfg.types,
                            cache=cfg.cache_images)
    cfg, composition = cfg.schedule(train_set.present, model_cfg.types)
    if cfg.batch_size % world.size:
        raise ValueError(f"hdclip.train: the global batch of {cfg.batch_size} is not divisible "
                         f"by the {world.size} processes")
    if world.main:  # the derived batch and budget, in the job's log
        print(f"{len(train_set)} training samples, batches of {cfg.batch_size}"
              + (f" ({composition.describe()})" if composition else "")
              + f", {cfg.steps} steps"
              + (f" ({cfg.epochs:g} epochs)" if cfg.epochs is not None else ""), file=sys.stderr)
    needs_val = evaluate_into is None or cfg.eval_every < cfg.steps
    val_set = (LabelledSet(val_manifest.parent, val_rows, model_cfg.types, cache=True)
               if val_rows and needs_val else None)
    semantic = method == "hdclip" and (cfg.lambda_semantic > 0 or cfg.lambda_clip > 0)
    targets, target_kind = None, "none"
    if semantic:
        targets, target_kind = _semantic_targets(model, model_cfg, train_set, sources,
                                                 captions, dev)
    wanted = cfg.terms(semantic)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        cfg = replace(cfg, steps=0)
        params = [torch.nn.Parameter(torch.zeros(()))]  # an optimizer needs one; never stepped
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    identity = run_identity(method, model_cfg, cfg, manifest, world_size=world.size,
                            precision=precision, semantic_target=target_kind)
    saved = _resumable(out / LAST, identity, dev, world.main) if resume else None
    start, history = 0, {"log": [], "val": []}
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        start = saved["step"]
        history = saved.get("history", history)
    out.mkdir(parents=True, exist_ok=True)
    if world.distributed and dev.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # ResNet towers
    ddp = (DistributedDataParallel(model, find_unused_parameters=model_cfg.controller
                                   and not semantic)
           if world.distributed and cfg.steps > 0 else model)

    def state(step: int) -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "step": step, "method": method, "run": identity,
                "hdclip": model_cfg.to_dict(), "history": history,
                "train": asdict(cfg), "random_init": model_cfg.random_init,
                "precision": precision, "semantic_target": target_kind}

    stop = {"signal": 0}

    def on_signal(signum, frame):
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGUSR1)}
    autocast = _autocast(precision, dev)
    order = StepBatches(len(train_set), cfg.batch_size, cfg.seed, start, cfg.steps,
                        rank=world.rank, world=world.size, composition=composition)
    bar = tqdm(total=cfg.steps, initial=start, desc="train",
               disable=not (progress and world.main))
    log = _Log(history, bar)
    t0 = time.perf_counter()
    metrics: dict = {}
    try:
        steps = batches(train_set, order, workers=cfg.loader_workers, device=dev)
        for step, (imgs, present, level, idx) in enumerate(steps, start):
            states = flip_states(step, cfg.seed, order.offset, len(idx))
            imgs = flip(imgs, states).float().div(255)
            tgt = targets.pick(idx, states, dev) if targets is not None else None
            with autocast:
                output = ddp(imgs, semantic=semantic)
                raw = model.loss_terms(output, present, level, terms=wanted, targets=tgt)
                share = (distributed.global_share(present.sum())
                         if any(t in raw for t in PER_PRESENT) else None)
                terms = weighted(raw, cfg, share)
                loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            done = step + 1
            bar.update()
            if world.main:
                log.add(done, loss, sched.get_last_lr()[0], gnorm, time.perf_counter() - t0,
                        terms)
            if done == cfg.steps:
                due = evaluate_into is None  # else the full evaluation below gives the row
            else:
                due = done % cfg.eval_every == 0
            if val_set is not None and world.main and due:
                log.flush()
                metrics = validate(model, val_set, dev)
                history["val"].append({"step": done, **metrics})
            stopping = distributed.agree_max(stop["signal"], world, dev)
            if world.main and (done % cfg.checkpoint_every == 0 or done == cfg.steps
                               or stopping):
                log.flush()
                checkpoints.save_state(out / LAST, state(done))
            if stopping:
                raise _Preempted(stopping)
    except _Preempted as exc:
        bar.close()
        distributed.barrier(world)
        distributed.shutdown(world)
        for s, h in old.items():
            signal.signal(s, h)
        raise SystemExit(128 + int(exc.args[0])) from None
    log.flush()
    bar.close()
    for s, h in old.items():
        signal.signal(s, h)
    if world.main:
        metrics = _finish(model, state(cfg.steps), history, out, val_manifest, val_set, dev,
                          evaluate_into)
    distributed.barrier(world)
    distributed.shutdown(world)
    return metrics


class _Log:
    """The per-step log, kept as device tensors and read back in bulk (every ``every`` steps,
    and before a checkpoint or a validation), so that logging does not wait on the GPU each
    step."""

    def __init__(self, history: dict, bar, every: int = 50):
        self.history, self.bar, self.every = history, bar, every
        self.pending: list[tuple[dict, dict]] = []

    def add(self, step: int, loss, lr: float, gnorm, seconds: float, terms: dict) -> None:
        values = {"loss": loss.detach(), "grad_norm": gnorm.detach(),
                  **{f"loss_{k}": v.detach() for k, v in terms.items()}}
        self.pending.append(({"step": step, "lr": lr, "seconds": seconds}, values))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        names = list(self.pending[0][1])
        read = torch.stack([torch.stack([v[n].float() for n in names])
                            for _, v in self.pending]).tolist()
        for (fixed, _), row in zip(self.pending, read):
            vals = dict(zip(names, row))
            self.history["log"].append(
                {"step": fixed["step"], "loss": vals.pop("loss"), "lr": fixed["lr"],
                 "grad_norm": vals.pop("grad_norm"), "seconds": fixed["seconds"], **vals})
        self.bar.set_postfix(loss=f"{self.history['log'][-1]['loss']:.3f}")
        self.pending = []


def _semantic_targets(model, model_cfg: HDCLIPConfig, train_set: LabelledSet,
                      sources: Path | None, captions: Path | None, dev):
    """The semantic losses' targets and what they are (``captions`` or ``hq image``)."""
    if not model_cfg.controller:
        raise ValueError("hdclip.train.lambda_semantic / lambda_clip need "
                         "hdclip.model.controller: true (the frozen tower cannot move)")
    if sources is None:
        raise ValueError("the semantic losses need --sources (the source images' index)")
    text = None
    if captions is not None:
        titles = caption_of(train_set.rows, read_captions(captions), Path(captions))
        unique = sorted(set(titles))
        with torch.no_grad():
            emb = model.encode_text(unique).float().cpu()
        text = emb[torch.tensor([unique.index(t) for t in titles])]
    hq = hq_targets(model, train_set.rows, sources, dev)
    return SemanticTable(hq, text, train_set.group), ("captions" if text is not None
                                                         else "hq image")


def _finish(model, final: dict, history: dict, out: Path, manifest: Path,
            val_set: LabelledSet | None, dev, evaluate_into: Path | None) -> dict:
    """Write every declared output of a finished run from its state, each file whole."""
    del final["model"], final["optimizer"], final["scheduler"], final["history"]
    val_rows = list(history["val"])
    metrics = next((r for r in reversed(val_rows) if r["step"] == final["step"]), None)
    metrics = {k: v for k, v in metrics.items() if k != "step"} if metrics else {}
    if evaluate_into is not None:
        result = estimator_evaluation.write_evaluation(model, final, out, manifest, evaluate_into,
                                                       device=dev)
        metrics = result["metrics"]["single"]
        val_rows.append({"step": final["step"], **metrics})
    elif not metrics and val_set is not None:
        metrics = validate(model, val_set, dev)  # nothing trained (CLIP zero-shot)
    final["metrics"] = metrics
    final["data"] = {"manifest_sha1": final["run"]["manifest_sha1"],
                     "val_manifest": str(manifest)}
    checkpoints.save_model(out, model, final)
    zio.write_text(out / LOG, _csv_text(history["log"]))
    zio.write_text(out / VAL, _csv_text(val_rows))
    zio.write_text(out / "metrics.json", json.dumps(
        {"step": final["step"], "method": final["method"], "random_init": final["random_init"],
         "arch": final["hdclip"]["arch"], "precision": final["precision"],
         "semantic_target": final["semantic_target"], **metrics}, indent=2, sort_keys=True) + "\n")
    return metrics
