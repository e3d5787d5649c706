"""README.md is the newcomer's page (issue 26): short, every link and every section it names
exists (docs/ and results/README.md too), no measured number typed into its prose (a run's
numbers are on its generated page, ``zephir.report.numbers``), its test command is the one CI
runs, and its CFPG example runs as written. (Its HD-CLIP example: tests/test_checkpoints.py.)"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, REPO / "results" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MAX_LINES = 250

FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a link to a page followed by the name of one of its sections: [x](docs/x.md), "Section"
SECTION = re.compile(r"\]\(([^)#\s]+\.md)\)[,;]?\s+\"([^\"]+)\"")
ROOTS = ("zephir", "tests", "docs", "workflow", "config", "profiles", "benchmarks", ".ci")
REPO_PATH = re.compile(r"(?<![\w/.-])((?:" + "|".join(map(re.escape, ROOTS))
                       + r")/[\w.*/-]*[\w*/])")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*$", re.MULTILINE)
# what a measurement looks like in prose: a percentage, a decimal, a ratio ("1.73x"), a
# duration or a size ("19 minutes", "2.0 GB", "3,465 samples/s")
MEASURED = re.compile(r"\d+(?:[.,]\d+)?\s*%"
                      r"|(?<![\w.])\d[\d,]*(?:\.\d+)?\s*"
                      r"(?:ms|s|min|minutes?|seconds?|hours?|GB|MB|samples/s)(?!\w)"
                      r"|(?<![\w.])\d+(?:\.\d+)?x(?!\w)"
                      r"|(?<![\w.])\d+\.\d+(?![\w.]*\w)")


def prose(text: str) -> str:
    """``text`` without its code blocks and code spans (commands, paths, pins)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def measured_numbers(text: str) -> list[str]:
    """The numbers in ``text``'s prose that read as measurements. A version number after
    "Python " is the package's requirement (pyproject.toml), not a measurement."""
    text = prose(text)
    return [m.group(0) for m in MEASURED.finditer(text)
            if not re.search(r"Python\s+$", text[:m.start()])]


def headings(page: Path) -> list[str]:
    return HEADING.findall(FENCE.sub("", page.read_text()))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def ignored(path: Path) -> bool:
    """Whether git ignores ``path`` (a clone would not have it); False outside a checkout."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(path)],
                             check=False, capture_output=True)
    except FileNotFoundError:
        return False
    return out.returncode == 0


def section(text: str, title: str) -> str:
    """The part of ``text`` under the heading ``## title``, up to the next ``## ``."""
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


# --------------------------------------------------------------------------- the checker

def test_the_number_check_finds_what_a_run_measured_and_only_that():
    """The check below catches the numbers README used to retype (issue 26: "68.7 % / 0.80";
    durations and benchmark ratios of the old README), in prose only."""
    assert measured_numbers("it reaches **68.7 % type accuracy and a pooled level SROCC of "
                            "0.80**") == ["68.7 %", "0.80"]
    assert measured_numbers("19 minutes for its 65 jobs, peak memory 2.0 GB") == [
        "19 minutes", "2.0 GB"]
    assert measured_numbers("latency 1.73x for ViT-B/32; a bare step 3,465 samples/s") == [
        "1.73x", "3,465 samples/s"]
    assert measured_numbers("a 90% share") == ["90%"]
    not_measured = ("Python 3.11; `torch==2.14.1` is pinned. Levels on a 0..100 scale, eq. "
                    "12-15, up to 3x3 crops, photo_x4, 4 held-out photos, tables 1-6.\n"
                    "```bash\nsnakemake -c2  # 68.7 %\n```\n")
    assert measured_numbers(not_measured) == []


# --------------------------------------------------------------------------- README

def test_the_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines < MAX_LINES, f"README.md has {lines} lines; the newcomer's page stays under " \
                              f"{MAX_LINES}: move the detail to docs/"


def test_the_readme_types_no_measured_number():
    """A run's numbers are on its generated page (results/<name>/tables/numbers.md), past ones
    in docs/notes.md and docs/benchmarks.md: README's prose types none."""
    found = measured_numbers(README.read_text())
    assert not found, f"README.md retypes measured numbers {found}: point at the numbers " \
                      "page, or docs/notes.md for past ones"


def test_the_readme_names_no_commit():
    """Commit ids belong with the dated measurements (docs/notes.md), not on the newcomer's
    page: no word of 7-40 hex digits with both a digit and a letter, as git abbreviates them."""
    sha = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
    assert sha.findall("at commit edcc231, measured at c5b5587") == ["edcc231", "c5b5587"]
    found = sha.findall(README.read_text())
    assert not found, f"README.md names commits {found}: move them to docs/notes.md"


def test_the_readme_test_command_is_what_ci_runs():
    """The second of README's two commands is .ci/run's last line, character for character."""
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL)
    assert any(ci in b.splitlines() for b in blocks), f"README has no bash block line {ci!r}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    """Every link of README, results/README.md and docs/*.md to a file of this repository names
    one that a clone has (not ignored by git), and an anchor names one of its headings."""
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or ignored(dest):
            broken.append(f"{target} (no such file in a clone)")
        elif anchor and anchor not in {slug(h) for h in headings(dest)}:
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{page.relative_to(REPO)}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_repository_path_named_exists(page):
    """A path into the repository's own folders (``zephir/report/numbers.py``,
    ``workflow/envs/*.yaml``), in prose or a command, names something there; the results and
    data folders a run fills are not checked."""
    missing = [p for p in REPO_PATH.findall(page.read_text())
               if not list(REPO.glob(p.rstrip("/")))]
    assert not missing, f"{page.relative_to(REPO)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_section_named_after_a_link_exists(page):
    """``[docs/workflow.md](docs/workflow.md), "DVC"`` sends the reader to a section: the page
    has a heading that starts with that name."""
    missing = []
    for target, name in SECTION.findall(FENCE.sub("", page.read_text())):
        name = " ".join(name.split())  # a name may wrap
        dest = page.parent / target
        if dest.is_file() and not any(h.strip("`").startswith(name) for h in headings(dest)):
            missing.append(f'{target}, "{name}"')
    assert not missing, f"{page.relative_to(REPO)} names sections that do not exist: {missing}"


# --------------------------------------------------------------------------- the CFPG example

@pytest.fixture
def cfpg_folder(tmp_path) -> Path:
    """Where README's CFPG example expects its files: a trained HD-CLIP's folder (tiny,
    random-init) in results/embedded/hdclip and an LQ photo in my_lq/."""
    import torch

    from zephir import checkpoints, datasets, io as zio
    from zephir.hdclip import create_model

    torch.manual_seed(0)
    model = create_model("zephir-tiny-rn")
    checkpoints.save_model(tmp_path / "results" / "embedded" / "hdclip", model,
                           {"method": "hdclip", "hdclip": model.cfg.to_dict(), "step": 1,
                            "train": {"steps": 1, "batch_size": 8, "lr": 1e-3, "seed": 0},
                            "metrics": {}})
    (tmp_path / "my_lq").mkdir()
    zio.write_png(tmp_path / "my_lq" / "photo.png", datasets.embedded_image("coffee")[:24, :32])
    return tmp_path


@pytest.mark.slow
def test_the_readme_cfpg_example_runs(cfpg_folder):
    """README's "CFPG as a library": its `zephir embed` line, then its Python block as written,
    restore my_lq/photo.png with CFPG into a PNG four times its size."""
    from PIL import Image

    text = section(README.read_text(), "CFPG as a library")
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    bash = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)[0]
    embed = next(line for line in bash.splitlines() if line.startswith("zephir embed"))
    out = subprocess.run([sys.executable, "-m", "zephir", *shlex.split(embed)[1:]],
                         check=False, capture_output=True, text=True, cwd=cfpg_folder, env=env)
    assert out.returncode == 0, out.stderr
    block = text.split("```python\n", 1)[1].split("```")[0]
    show = "\nimport json; print(json.dumps(record))"  # what it made, for the checks below
    out = subprocess.run([sys.executable, "-c", block + show], check=False, capture_output=True,
                         text=True, cwd=cfpg_folder, env=env)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert (record["mode"], record["w_par"], record["w_orth"]) == ("cfpg", 1.0, 0.6)
    assert set(record["degradation"]["degradations"]) == {"blur", "noise", "jpeg", "downsample"}
    with Image.open(cfpg_folder / "photo_x4.png") as img:
        assert img.size == (4 * 32, 4 * 24)
    assert record["size"] == {"lq": [24, 32], "output": [96, 128]}
