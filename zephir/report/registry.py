"""The paper's tables and figures, each declared once, for the command line and the workflow.

:data:`TABLES` maps a table's name to a :class:`Table`: the results files it reads (an
:class:`Input`), the runs the workflow feeds it, the builder that turns the results into a
DataFrame, the format of each numeric column (:class:`~zephir.report.render.Column`) and the
caption function, which reads what it states from the results' metadata. :data:`FIGURES` maps a
figure's number to a :class:`Figure`: its drawing function, the inputs and options it takes.
``zephir table`` / ``zephir figure`` take their choices and flags from here, and
:mod:`zephir.plan` and ``workflow/rules/report.smk`` the tables and figures the workflow makes.

Builders and drawing functions are named ``"module:function"`` and imported when used, so that
listing tables and figures stays cheap (no pandas, no matplotlib): the command line parses its
arguments and Snakemake its rules without them.

To add a table: write its builder (a list of results -> ``pandas.DataFrame``, in
:mod:`zephir.report.tables` or a module of its own), declare a :class:`Table` below with a
:class:`Column` for every numeric column, and map its ``runs`` to files in
:meth:`zephir.plan.Plan.table_runs`. For results other than ``metrics.json``
declare an :class:`Input` with the flag and the reader of those files. To add a figure: write
its drawing function (inputs and options as keyword arguments, then ``out``), declare a
:class:`Figure`, and name the files it draws from in :meth:`zephir.plan.Plan.figure_inputs`
(its rule ``figure<N>`` is made from the entry, in one loop of ``workflow/rules/report.smk``).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from zephir.report import captions, render
from zephir.report.render import CORR, MAE, PERCENT, Column
from zephir.report.results import read_results, read_scores


def resolve(ref: str | Callable) -> Callable:
    """A callable, or the function a ``"module:function"`` reference names."""
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Input:
    """A kind of results file an entry reads, passed on the command line as ``--<flag>``.

    ``many``: a list of files (one per model, say) rather than one; ``read``: for a table's
    source, the function turning the files into the results its builder and caption take.
    """

    flag: str
    help: str
    many: bool = False
    read: Callable[[Sequence[Path]], list] | None = None

    @property
    def dest(self) -> str:
        """The keyword the drawing function takes it as (and argparse's attribute)."""
        return self.flag.replace("-", "_")


def several(kind: Input) -> Input:
    """The same kind of file, one per model."""
    return replace(kind, many=True)


@dataclass(frozen=True)
class Option:
    """A setting of a figure, passed as ``--<flag>`` and to the drawing function as ``param``."""

    flag: str
    type: Callable
    default: object
    help: str
    param: str = ""

    @property
    def dest(self) -> str:
        return self.flag.replace("-", "_")

    @property
    def keyword(self) -> str:
        return self.param or self.dest


@dataclass(frozen=True)
class Table:
    """One table: what it reads, how it is built, shown and captioned.

    ``runs``: the group of runs whose results the workflow passes (``common.smk`` maps it to
    files). ``caption(title, results, config_hash)`` returns the caption. ``columns``: the
    format of every numeric column the builder may return, or a function of the results that
    gives them (restoration tables, whose columns are the metrics that were scored).
    """

    name: str
    title: str
    build: str | Callable
    runs: str
    columns: Mapping[str, Column] | Callable[[Sequence[dict]], Mapping[str, Column]]
    source: Input
    caption: Callable[[str, Sequence[dict], str], str] = captions.estimation

    def make(self, files: Sequence[Path], config_hash: str, out: Path) -> list[Path]:
        """Read ``files``, build the table and write ``out``.csv / .md / .tex, and beside
        them ``out``.paper.csv / .paper.md: the paper's values of the same cells and the
        run's difference (:mod:`zephir.report.paper`)."""
        if not files:
            raise ValueError(f"{self.name} needs --{self.source.flag}")
        results = self.source.read(files)
        df = resolve(self.build)(results)
        columns = resolve(self.columns)(results) if isinstance(self.columns, str) or callable(
            self.columns) else self.columns
        caption = self.caption(self.title, results, config_hash)
        from zephir.report import paper  # pandas: only when a table is made

        return (render.write(df, out, caption, columns, f"tab:{self.name}")
                + paper.write(self.name, df, columns, out, self.title))


@dataclass(frozen=True)
class Figure:
    """One figure: its drawing function and the inputs and options it takes; ``number``: the
    paper's figure number, or a name for a figure beyond the paper.

    ``paired``: its lists of files go together (one file per model in each), so they must have
    the same length.
    """

    number: int | str
    title: str
    draw: str | Callable
    inputs: tuple[Input, ...]
    options: tuple[Option, ...] = field(default=())
    paired: bool = False

    @property
    def rule(self) -> str:
        """Its rule in ``workflow/rules/report.smk``: ``figure7`` for the paper's figure 7,
        ``figure_transfer`` for the figure named "transfer" beyond the paper."""
        n = self.number
        return f"figure{n}" if isinstance(n, int) else f"figure_{n}"

    def make(self, out: Path, given: Mapping[str, object]) -> Path:
        """Draw the figure into ``out`` from ``given`` (argparse names -> files / values;
        ``None`` for not given). Missing, unexpected or miscounted inputs are clear errors."""
        n = self.number
        given = {k: v for k, v in given.items() if v is not None and v != []}
        missing = [f"--{i.flag}" for i in self.inputs if i.dest not in given]
        if missing:
            raise ValueError(f"figure {n} needs {', '.join(missing)}")
        known = {i.dest: i.flag for i in self.inputs} | {o.dest: o.flag for o in self.options}
        extra = [f"--{k.replace('_', '-')}" for k in given if k not in known]
        if extra:
            raise ValueError(f"figure {n} does not take {', '.join(extra)} (it takes "
                             f"{', '.join('--' + f for f in known.values())})")
        kwargs: dict[str, object] = {}
        for i in self.inputs:
            v = given[i.dest]
            files = [Path(p) for p in (v if isinstance(v, (list, tuple)) else [v])]
            if not i.many and len(files) != 1:
                raise ValueError(f"figure {n} takes one --{i.flag} file, not {len(files)}")
            kwargs[i.dest] = files if i.many else files[0]
        counts = {i.flag: len(kwargs[i.dest]) for i in self.inputs if i.many}
        if self.paired and len(set(counts.values())) > 1:
            raise ValueError(f"figure {n}: " + ", ".join(f"--{f} has {c}" for f, c in
                                                         counts.items())
                             + " file(s); they go together, one per model")
        for o in self.options:
            kwargs[o.keyword] = o.type(given[o.dest]) if o.dest in given else o.default
        return Path(resolve(self.draw)(**kwargs, out=Path(out)))


@dataclass(frozen=True)
class ConfigTable:
    """A table computed from the config's architectures rather than from results files
    (table 6): ``build(config)`` returns the DataFrame and the facts that
    ``caption(title, facts, config_hash)`` states."""

    name: str
    title: str
    build: str | Callable
    columns: Mapping[str, Column]
    caption: str | Callable

    def make(self, config: dict, config_hash: str, out: Path) -> list[Path]:
        """Build the table from ``config`` and write ``out``.csv / .md / .tex / .json and
        ``out``.paper.csv / .paper.md, as :meth:`Table.make`."""
        df, facts = resolve(self.build)(config)
        caption = resolve(self.caption)(self.title, facts, config_hash)
        from zephir.report import paper

        return (render.write(df, out, caption, self.columns, f"tab:{self.name}")
                + paper.write(self.name, df, self.columns, out, self.title))


def _index(entries, key: str) -> dict:
    out = {}
    for e in entries:
        k = getattr(e, key)
        if k in out:
            raise ValueError(f"two report entries named {k!r}")
        out[k] = e
    return out


# -------------------------------------------------------------------------- inputs

#: Evaluation results of ``zephir evaluate`` (tables 2-4, figures 3, 7, 9, 10).
METRICS = Input("metrics", "metrics.json of `zephir evaluate`", read=read_results)
PREDICTIONS = Input("predictions", "predictions.csv of `zephir evaluate`")
ARRAYS = Input("arrays", "arrays.npz of `zephir evaluate` (an HD-CLIP model's)")
MANIFEST = Input("manifest", "synth manifest.csv of the evaluated samples")
SOURCES = Input("sources", "image index of the clean source images")
#: Restoration results of ``zephir score`` (tables 1, 5, 7) and ``zephir restore`` (figures).
SCORES = Input("scores", "<run>.json score files of `zephir score`",
               read=read_scores)
RESTORED = Input("restored", "shard-*.done.json of a `zephir restore` run (its folder holds "
                 "the images)")
CHECKPOINT = Input("checkpoint", "a trained HD-CLIP model's folder or model.safetensors")
BLIND = Input("blind", "blind manifest.csv of the restored set (LQ and HQ images)")
LQ = Input("lq", "the LQ images a restoration read: the blind manifest.csv, or the image "
           "index of an hq: false set")
RESTORATION_COLUMNS = "zephir.report.tables:MetricColumns"

# -------------------------------------------------------------------------- tables

#: Table 2's metrics on the single-type samples, as tables 3 and 4 show them too.
ESTIMATION = {"Type Acc (%)": PERCENT, "MAE": MAE, "SROCC": CORR, "PCC": CORR}

TABLES: dict[str, Table] = _index([
    Table("table2", "Table 2: degradation estimation on the single-type validation samples.",
          build="zephir.report.tables:table2", runs="methods", columns=ESTIMATION,
          source=several(METRICS), caption=captions.table2),
    Table("table2_beyond", "Beside table 2 (beyond the paper): levels near bin centres and "
          "between them, mixtures of 2-4 types, and the transfer evaluation.",
          build="zephir.report.tables:table2_beyond", runs="methods_transfer",
          columns={"MAE near bin": MAE, "SROCC near bin": CORR, "MAE between": MAE,
                   "SROCC between": CORR, "Mix type recall (%)": PERCENT, "Mix MAE": MAE,
                   "Mix SROCC": CORR, "Transfer acc (%)": PERCENT, "Transfer SROCC": CORR},
          source=several(METRICS), caption=captions.near_bin),
    Table("table2_transfer", "Beside table 2 (beyond the paper): degradation estimation on "
          "photos degraded by code HD-CLIP never trained on, against the validation samples.",
          build="zephir.report.tables:table2_transfer", runs="transfer",
          # rows of different types side by side: nothing in bold; the worst photo's name is
          # a value (not part of the row's name in table2_transfer.json)
          columns={"Val acc (%)": Column(".1f"), "Transfer acc (%)": Column(".1f"),
                   **{c: Column(".3f") for c in (
                       "Val SROCC", "Transfer SROCC", "SROCC gap", "Val SROCC within photo",
                       "Transfer SROCC within photo", "Worst photo", "Worst photo SROCC")}},
          source=several(METRICS), caption=captions.transfer),
    Table("table3", "Table 3: loss ablations of HD-CLIP.", build="zephir.report.tables:table3",
          runs="losses", columns=ESTIMATION, source=several(METRICS), caption=captions.losses),
    Table("table4", "Table 4: top-k bin centres and gap size of the local interpolation "
          "regression (eq. 6).", build="zephir.report.tables:table4", runs="topk_gap",
          columns=ESTIMATION, source=several(METRICS), caption=captions.topk_gap),
    Table("table1", "Table 1: restoration of the synthetic test sets (Real-ESRGAN LQ images), "
          "each backbone without HD-CLIP (baseline), with the CFG variant and with CFPG.",
          build="zephir.report.tables:table1", runs="restorations",
          columns=RESTORATION_COLUMNS, source=several(SCORES), caption=captions.restoration),
    Table("table5", "Table 5: CFPG's weights w_orth x w_par (eq. 14).",
          build="zephir.report.tables:table5", runs="sweep", columns=RESTORATION_COLUMNS,
          source=several(SCORES), caption=captions.restoration),
    Table("table7", "Table 7: restoration of real-world LQ images without ground truth "
          "(no-reference metrics).", build="zephir.report.tables:table7",
          runs="realworld", columns=RESTORATION_COLUMNS, source=several(SCORES),
          caption=captions.restoration),
], "name")

#: Tables from the config alone (no results): ``zephir table NAME --config FILE``.
CONFIG_TABLES: dict[str, ConfigTable] = _index([
    ConfigTable("table6", "Table 6: encoder efficiency (parameters, size, context dimension, "
                "inference time).", build="zephir.report.tables:table6",
                columns={"Params (M)": Column(".2f"), "Size (MiB)": Column(".2f"),
                         "Context dim.": Column(".0f"), "Inference Time (ms)": Column(".2f"),
                         "Paper time, GPU (ms)": Column(".3f")},
                caption=captions.table6),
], "name")

# -------------------------------------------------------------------------- figures

FIGURES: dict[int | str, Figure] = _index([
    Figure(1, "CLIP text embeddings of numeric prompts vs HD-CLIP's composition anchors",
           "zephir.report.figures:figure1", (CHECKPOINT,),
           (Option("type", str, "blur", "degradation type whose anchors are shown",
                   param="kind"),)),
    Figure(3, "PCA of the HD-CLIP degradation space", "zephir.report.figures:figure3",
           (ARRAYS, PREDICTIONS, METRICS)),
    Figure(7, "predicted vs true level: HD-CLIP's level, and the MM-RealSR-style degree x 100 "
           "(blur and noise only, learned from order)",
           "zephir.report.figures:figure7", (several(PREDICTIONS), several(METRICS)),
           paired=True),
    Figure(8, "log-magnitude spectra of the degradations", "zephir.report.figures:figure8",
           (SOURCES,), (Option("level", float, 80.0, "degradation level shown"),)),
    Figure(9, "inverse check: predicted degradations re-applied",
           "zephir.report.figures:figure9", (PREDICTIONS, METRICS, MANIFEST, SOURCES)),
    Figure(10, "similarity of the level anchors, loss ablations",
           "zephir.report.figures:figure10", (several(ARRAYS), several(METRICS)),
           (Option("type", str, "blur", "degradation type whose anchors are shown",
                   param="kind"),), paired=True),
    Figure(21, "real-world sets: baseline, CFG, CFPG (one --lq per set; --restored the runs "
           "of each set in turn)", "zephir.report.figures:figure21",
           (several(RESTORED), several(LQ)), (Option("crop", int, 96, "crop side in pixels"),)),
    Figure("comparison", "section 9.1: one set and backbone in every mode",
           "zephir.report.figures:comparison", (several(RESTORED), LQ),
           (Option("crop", int, 96, "crop side in pixels"),)),
    Figure("transfer", "beyond the paper: per-photo level curves of the transfer set (one "
           "--predictions / --metrics pair of `zephir evaluate --transfer` per model)",
           "zephir.report.figures:figure_transfer", (several(PREDICTIONS), several(METRICS)),
           paired=True),
    Figure(6, "restorations: LQ, baseline, CFG, CFPG, HQ", "zephir.report.figures:figure6",
           (several(RESTORED), BLIND), (Option("crop", int, 96, "crop side in pixels"),)),
    Figure(11, "CFPG over the w_orth x w_par sweep", "zephir.report.figures:figure11",
           (several(RESTORED), BLIND), (Option("crop", int, 96, "crop side in pixels"),)),
], "number")


# -------------------------------------------------------------------------- entry points

def table(name: str) -> Table:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; expected one of {', '.join(TABLES)}")
    return TABLES[name]


def figure_key(text: str) -> int | str:
    """A figure's key as typed: the paper's figures by number, the others by name."""
    return int(text) if str(text).isdigit() else str(text)


def figure(number: int | str) -> Figure:
    number = figure_key(number)
    if number not in FIGURES:
        raise ValueError(f"unknown figure {number}; expected one of "
                         f"{', '.join(map(str, FIGURES))}")
    return FIGURES[number]


def make_table(name: str, files: Sequence[Path], config_hash: str, out: Path) -> list[Path]:
    """Build table ``name`` from its results files and write ``out``.csv / .md / .tex."""
    return table(name).make(files, config_hash, out)


def draw_figure(number: int | str, out: Path, **given) -> Path:
    """Draw figure ``number`` into ``out``; ``given``: its inputs and options by name."""
    return figure(number).make(out, given)


def table_sources() -> dict[str, Input]:
    """Every kind of file some table reads, by flag (the flags of ``zephir table``)."""
    return {t.source.flag: t.source for t in TABLES.values()}


def _figures_of(flag: str) -> str:
    numbers = [str(f.number) for f in FIGURES.values()
               if flag in {i.flag for i in f.inputs} | {o.flag for o in f.options}]
    return ("figure " if len(numbers) == 1 else "figures ") + ", ".join(numbers)


def figure_inputs() -> dict[str, Input]:
    """Every input some figure takes, by flag (the file flags of ``zephir figure``): a list of
    files where any figure takes several. Help says which figures read it."""
    out: dict[str, Input] = {}
    for f in FIGURES.values():
        for i in f.inputs:
            seen = out.get(i.flag)
            out[i.flag] = replace(i, many=i.many or (seen is not None and seen.many),
                                  help=f"{i.help} ({_figures_of(i.flag)})")
    return out


def figure_options() -> dict[str, Option]:
    """Every option some figure takes, by flag (one type per flag; help gives each figure's
    default)."""
    out: dict[str, Option] = {}
    defaults: dict[str, list[str]] = {}
    for f in FIGURES.values():
        for o in f.options:
            if o.flag in out and out[o.flag].type is not o.type:
                raise ValueError(f"figure option --{o.flag} has two types")
            defaults.setdefault(o.flag, []).append(f"figure {f.number}, default {o.default}")
            out[o.flag] = replace(o, help=f"{o.help} ({'; '.join(defaults[o.flag])})")
    return out
