"""Captions of tables and figure titles, written from the results' own metadata.

A caption function takes the entry's title, the results a table was built from and the config
hash, and returns the caption: :func:`provenance` for any table, :func:`estimation` and its
variants for the degradation-estimation tables, :func:`restoration` for tables 1, 5 and 7,
:func:`table6` (from the measured facts rather than results) for table 6. Whatever a caption states about the runs (the
gap that split the levels, the top-k, the losses, the training steps, a random-init or tiny
encoder) is read from the results, never typed. Light: no pandas, no matplotlib.
"""
from __future__ import annotations

from collections.abc import Sequence

from zephir.report.results import (LABELS, losses_of, metric_label, random_init, tiny_archs,
                                   topk_label)


def _join(parts: Sequence[str]) -> str:
    return " ".join(p for p in parts if p)


def encoder_note(results: Sequence[dict]) -> str:
    """The warning a caption carries when an encoder was trained from random init or is a tiny
    stand-in architecture (empty otherwise)."""
    what = []
    if random_init(results):
        what.append("trained from random init (no pretrained CLIP weights)")
    tiny = tiny_archs(results)
    if tiny:
        what.append(f"tiny architecture {', '.join(tiny)}")
    if not what:
        return ""
    return ("Encoders " + " and ".join(what) + ": these numbers are not the paper's and only "
            "compare the methods with each other.")


def figure_note(results: Sequence[dict]) -> str:
    """The same warning, short, for a figure's title (empty when there is nothing to say)."""
    what = (["random-init encoder"] if random_init(results) else []) + tiny_archs(results)
    return f" [{', '.join(what)}: not the paper's numbers]" if what else ""


def provenance(title: str, results: Sequence[dict], config_hash: str, *,
               facts: Sequence[str] = ()) -> str:
    """Any table's caption: title, facts read from the results, config hash, encoder warning."""
    return _join([title, *facts, f"Config {config_hash}.", encoder_note(results)])


def steps_note(results: Sequence[dict]) -> str:
    """How many steps the trained estimators ran (zero-shot CLIP is not trained)."""
    trained = [r for r in results if r.get("method") != "clip_zeroshot"
               and "steps" in r.get("train", {})]
    steps = [r["train"]["steps"] for r in trained]
    if len(set(steps)) == 1:
        return f"Training steps: {steps[0]} per model."
    if trained:
        return "Training steps: " + ", ".join(
            f"{LABELS.get(r['method'], r['method'])} {r['train']['steps']}"
            for r in trained) + "."
    return ""


def estimation(title: str, results: Sequence[dict], config_hash: str, *,
               facts: Sequence[str] = ()) -> str:
    """A degradation-estimation table (metrics.json of ``zephir evaluate``): provenance and
    the training steps."""
    return _join([provenance(title, results, config_hash, facts=facts), steps_note(results)])


def _label(result: dict) -> str:
    return LABELS.get(result["method"], result["method"])


def _arch(result: dict) -> str:
    return result.get("hdclip", {}).get("arch", result.get("arch", "?"))


#: The methods that stand for DA-CLIP in table 2.
DACLIP_METHODS = ("daclip_style", "daclip_released")


def daclip_arch_note(results: Sequence[dict]) -> str:
    """Table 2: the architecture of each DA-CLIP row, read from its checkpoint's settings, and
    whether it differs from HD-CLIP's (empty without a DA-CLIP row)."""
    da = [r for r in results if r["method"] in DACLIP_METHODS]
    if not da:
        return ""
    said = ", ".join(f"{_label(r)} on {_arch(r)}" for r in da)
    hd = sorted({_arch(r) for r in results if r["method"] == "hdclip"})
    if hd and any(_arch(r) not in hd for r in da):
        said += f", HD-CLIP on {', '.join(hd)}"
    elif hd:
        said += ", as HD-CLIP"
    return f"{said} (the paper's DA-CLIP is ViT-L/14, its table 6)."


def modelled_notes(results: Sequence[dict], *, mixtures: bool = False) -> list[str]:
    """What a table says of an estimator that leaves types unmodelled or whose levels are
    scores (``not_modelled`` / ``level_scale`` of its metrics.json): which samples its metrics
    pool and which cells are left empty (–). ``mixtures``: about table 2's companion (near /
    between bins and mixtures) rather than table 2."""
    notes = []
    for r in results:
        m = r["metrics"]
        missing, scale = m.get("not_modelled", []), m.get("level_scale", True)
        if not missing and scale:
            continue
        kept = [t for t in r.get("hdclip", {}).get("types", []) if t not in missing]
        parts = []
        if missing and mixtures and "mixtures" in m:
            parts.append(f"no type recall (–), and its mixture level metrics pool the "
                         f"{m['mixtures']['n']} present {'/'.join(kept)} entries of the "
                         f"{m['mixtures'].get('samples', '?')} mixtures")
        elif missing and not mixtures:
            single = m["single"]
            parts.append(f"no type prediction, so no type accuracy (–); its SROCC and PCC "
                         f"pool the {single.get('n_levels', single['n'])} of the "
                         f"{single['n']} samples whose type it models")
        if not scale:
            parts.append("its levels are 100 x a degree learned from the order of samples "
                         "alone, not estimates on the 0..100 level scale, so no MAE (–)"
                         + ("" if mixtures else "; PCC says how linear the degree is in the "
                            "level"))
        what = (f" models {' and '.join(kept)} only" if missing and kept else
                " leaves types unmodelled" if missing else "")
        notes.append(f"{_label(r)}{what}: {'; '.join(parts)}.")
    return notes


#: How a caption names the readings of hdclip.model.shift and slerp_negatives (eq. 2, 9).
SHIFT_READINGS = {"bin": "one vector per (type, bin)", "type": "one vector per type"}
NEGATIVE_READINGS = {"bins": "the type's bin anchors weighted by eq. 10",
                     "batch": "the batch's other texts of the type (NumCLIP)"}


def hdclip_choices_note(results: Sequence[dict]) -> str:
    """Table 2: the choices where the paper allows two readings and the recipe it lost, as
    HD-CLIP's rows were trained (docs/method.md, "Training recipe"), and whether the CLIP loss
    ran on the captions or on the fallback (clean crops). Empty without an HD-CLIP row."""
    notes = []
    for r in (r for r in results if r["method"] == "hdclip"):
        model, train = r.get("hdclip", {}), r.get("train", {})
        said = [f"eq. 2's shift {SHIFT_READINGS.get(model.get('shift', 'bin'))}",
                f"eq. 9's negatives {NEGATIVE_READINGS.get(model.get('slerp_negatives', 'bins'))}"]
        if "lr" in train:
            batch = (f"{train['batch_per_type']} per type" if train.get("batch_per_type")
                     else "any type")
            said.append(f"learning rate {train['lr']:g} at a batch of {train.get('batch_size')} "
                        f"({batch})")
        note = "HD-CLIP's choices (the paper is silent): " + "; ".join(said) + "."
        if train.get("lambda_clip", 0) > 0 and r.get("semantic_target") == "hq image":
            note += (" Its CLIP loss had no captions file (fallback): the clean crops' CLIP "
                     "embeddings were its positives, not the paper's image-caption pairs.")
        notes.append(note)
    return " ".join(dict.fromkeys(notes))


def table2(title: str, results: Sequence[dict], config_hash: str) -> str:
    """Table 2: provenance, the DA-CLIP rows' architecture, the cells an estimator does not
    fill, HD-CLIP's choices and its CLIP loss's texts, the training steps."""
    return _join([provenance(title, results, config_hash), daclip_arch_note(results),
                  *modelled_notes(results), hdclip_choices_note(results),
                  steps_note(results)])


def _number(x) -> str:
    return f"{float(x):g}"


def _default_gap() -> float:
    import inspect

    from zephir.metrics.estimation import evaluate_table

    return float(inspect.signature(evaluate_table).parameters["gap"].default)


def near_bin_gap(result: dict, default: float | None = None) -> float:
    """The gap an evaluation split levels near / between bin centres with.

    Read from ``metrics.near_bin.gap`` where the evaluation recorded it; an evaluation that did
    not record it used the default of :func:`zephir.metrics.estimation.evaluate_table`.
    """
    gap = result["metrics"].get("near_bin", {}).get("gap")
    if gap is None:
        gap = _default_gap() if default is None else default
    return float(gap)


def near_bin(title: str, results: Sequence[dict], config_hash: str) -> str:
    """Beside table 2: says which gap split the levels, read from the results."""
    default = _default_gap()
    gaps = [near_bin_gap(r, default) for r in results]
    if len(set(gaps)) == 1:
        split = (f"Near bin: true level within {_number(gaps[0] / 4)} (gap/4) of a multiple "
                 f"of the gap {_number(gaps[0])}; between: farther.")
    else:
        by = ", ".join(f"{LABELS.get(r['method'], r['method'])} {_number(g)}"
                       for r, g in zip(results, gaps))
        split = (f"Near bin: true level within gap/4 of a multiple of the gap (gaps differ: "
                 f"{by}); between: farther.")
    return _join([provenance(title, results, config_hash,
                             facts=[split, mixture_note(results), transfer_note(results)]),
                  *modelled_notes(results, mixtures=True), steps_note(results)])


def transfer_note(results: Sequence[dict]) -> str:
    """What the transfer evaluation is, with its photos and sample count read from the
    results (empty when no result carries one)."""
    with_transfer = [r for r in results if "transfer" in r]
    if not with_transfer:
        return ""
    m = with_transfer[0]["transfer"]["metrics"]
    photos = sorted({p for per in m.get("per_photo", {}).values() for p in per})
    named = ", ".join(photos) if len(photos) <= 8 else f"{len(photos)} photos"
    return ("Transfer: held-out photos (" + named + f"; {m['single']['n']} "
            "single-type samples) degraded by a second implementation of the four operators "
            "(zephir.degrade.transfer: scipy Gaussian filter, Pillow Lanczos down / bicubic up, "
            "numpy noise, JPEG's lossy steps in float at 4:2:2) on crops of other sizes "
            "than training's, each "
            "read whole as `zephir predict` reads an image; pooled SROCC mixes ranking within "
            "a photo with offsets between photos, the within-photo SROCC is the mean over "
            "photos.")


def transfer(title: str, results: Sequence[dict], config_hash: str) -> str:
    """The transfer table beside table 2."""
    return _join([provenance(title, results, config_hash, facts=[transfer_note(results)]),
                  *modelled_notes(results), steps_note(results)])


def mixture_note(results: Sequence[dict]) -> str:
    """Beside table 2: what the mixture columns are, whether every method saw the same
    mixture samples (their count, from the results) and which method skips them in training."""
    mixed = [r for r in results if "mixtures" in r["metrics"]]
    if not mixed:
        return ""
    text = ("Mixtures of 2-4 types: type recall is the share of the present types among the "
            "most confident ones.")
    counts = {r["metrics"]["mixtures"].get("samples") for r in mixed}
    if len(mixed) == len(results) and len(counts) == 1 and None not in counts:
        text += f" Every method is evaluated on the same {counts.pop()} mixture samples."
    elif len(mixed) < len(results):
        text += (" Without mixtures: " + ", ".join(_label(r) for r in results
                                                   if "mixtures" not in r["metrics"]) + ".")
    if any(r["method"] in DACLIP_METHODS for r in mixed):
        text += (" DA-CLIP-style trains on single-type samples only (its texts name one type "
                 "and level).")
    return text


def losses(title: str, results: Sequence[dict], config_hash: str) -> str:
    """Table 3: the top-k and gap the ablated models share, read from the results."""
    settings = sorted({(topk_label(r["hdclip"]["topk"]), _number(r["hdclip"]["gap"]))
                       for r in results})
    facts = ([f"All with top-k {settings[0][0]} and gap {settings[0][1]}."]
             if len(settings) == 1 else [])
    return estimation(title, results, config_hash, facts=facts)


def topk_gap(title: str, results: Sequence[dict], config_hash: str) -> str:
    """Table 4: the losses the models share, read from the results."""
    letters = sorted({losses_of(r) for r in results})
    facts = ([f"All with the losses of ({letters[0]})."] if len(letters) == 1 else [])
    return estimation(title, results, config_hash, facts=facts)


def unavailable_note(results: Sequence[dict]) -> str:
    """The caption sentence naming the restoration metrics left n/a for missing weights."""
    missing = sorted({metric_label(r, k) for r in results for k in r.get("unavailable", {})})
    if not missing:
        return ""
    return (f"n/a (weights missing): {', '.join(missing)}; `zephir weights check` says where "
            "each file goes.")


def conventions_note(results: Sequence[dict]) -> str:
    """Each restoration metric's convention (channel, range, border), once."""
    seen: dict[str, str] = {}
    for r in results:
        for k, text in r.get("conventions", {}).items():
            seen.setdefault(metric_label(r, k), text)
    return " ".join(f"{k}: {v}" for k, v in seen.items())


def restoration(title: str, results: Sequence[dict], config_hash: str) -> str:
    """A restoration table (score files of ``zephir score``): provenance, the bridge and
    CFPG's weights the runs used, the metrics' conventions, the metrics left n/a."""
    jobs = [r["meta"].get("job", {}) for r in results]
    facts = []
    bridges = sorted({j["bridge"] for j in jobs if "bridge" in j})
    if bridges:
        facts.append(f"HD-CLIP reaches the backbones through the {', '.join(bridges)} bridge.")
    weights = sorted({(j["w_orth"], j["w_par"]) for j in jobs if "w_orth" in j})
    if len(weights) == 1:
        facts.append(f"CFPG: w_orth {weights[0][0]:g}, w_par {weights[0][1]:g}.")
    if any(r["meta"].get("random_init") for r in results):
        facts.append("Backbones random-init (tiny, built in code): these numbers are not the "
                     "paper's and only compare the modes with each other.")
    if any(r["meta"].get("hdclip_random_init") for r in results):
        facts.append("HD-CLIP trained from a random-init CLIP.")
    n = sorted({r["n_images"] for r in results})
    facts.append(f"Images per set: {', '.join(map(str, n))}.")
    facts += [unavailable_note(results), conventions_note(results)]
    return _join([title, *[f for f in facts if f], f"Config {config_hash}."])


# ------------------------------------------------------------- encoder efficiency: table 6

def shift_readings(total: int, k: int, j: int, d: int) -> dict[str, float]:
    """HD-CLIP's parameter count (M) under other granularities of eq. 2's shift delta_k(l),
    from zephir's ``total`` with its (K, J, d) shift: one per type, one per bin, none."""
    per_bin = k * j * d
    return {"per (type, bin)": total / 1e6, "per type": (total - per_bin + k * d) / 1e6,
            "per bin, shared by the types": (total - per_bin + j * d) / 1e6,
            "none": (total - per_bin) / 1e6}


def table6(title: str, facts: dict, config_hash: str) -> str:
    """States the device, the protocol, random init, and where HD-CLIP's count stands against
    the paper's 247.29 M."""
    hd = facts["components"].get("HD-CLIP", {})
    note = ""
    if "shift" in hd:
        k, j = facts["types"], facts["bins"]
        d = hd["shift"] // (k * j)
        readings = shift_readings(sum(hd.values()), k, j, d)
        note = (f" HD-CLIP's eq. 2 shift is one {d}-vector per (type, bin), {k} x {j} x {d} = "
                f"{hd['shift']:,} parameters, for {readings['per (type, bin)']:.2f} M; one per "
                f"type would give {readings['per type']:.2f} M, one per bin "
                f"{readings['per bin, shared by the types']:.2f} M, none "
                f"{readings['none']:.2f} M: none of these is the paper's 247.29 M, which is "
                "14-24 k parameters below this count (docs/report.md, table 6).")
    return (f"{title} DA-CLIP is zephir's DA-CLIP-style build (its controller on CLIP), HD-CLIP "
            "zephir's (zephir/hdclip/model.py). "
            "Parameters and sizes counted on the architectures (random init, no "
            "weights; size = float32 parameters / 2^20, MiB, which is what the paper's MB "
            f"are: 151.28 M x 4 B / 2^20 = 577.08). Inference time measured here on "
            f"{facts['device']} with random-init weights: batch 1, median of "
            f"{facts['repeats']} after {facts['warmup']} warm-up calls, each encoder's image "
            "path at its tower's input size; the paper's times are on its GPU. Rows without a "
            "time are the paper's architectures beside a config that runs its own (tiny) "
            f"ones.{note} Config {config_hash}."
            )
