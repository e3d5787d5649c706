"""No zephir command reaches for the network or prints another library's failure at import
(issue 30): the CLI entry points run as subprocesses on the embedded default at toy sizes, under
a socket guard, and every line they print must be one of zephir's own (or a warning kept on
purpose: a missing weight, a random-init model)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from zephir import config as zconfig
from zephir import datasets
from zephir import io as zio

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "config.yaml"

# Loaded as `sitecustomize` by every Python process of the test (PYTHONPATH carries it to the
# subprocesses a command starts too): an IPv4/IPv6 connect or a name lookup is written to
# $ZEPHIR_NET_LOG with the stack that asked, then refused. Unix sockets stay allowed.
GUARD = '''\
import os, socket, traceback

_LOG = os.environ["ZEPHIR_NET_LOG"]
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _refuse(what, detail):
    with open(_LOG, "a") as f:
        f.write(f"{what} {detail!r}\\n{''.join(traceback.format_stack())}\\n")
    raise OSError(f"network blocked by tests/test_quiet.py: {what} {detail!r}")


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect", address)
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect_ex", address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    _refuse("getaddrinfo", host)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.getaddrinfo = getaddrinfo
'''

# What the commands may print. zephir's own lines, per command, and one third-party line kept on
# purpose: open_clip's note that the model it built has random weights (a warning that matters).
OPEN_CLIP_RANDOM_INIT = (r"WARNING:root:No pretrained weights loaded for model 'zephir-tiny-rn'\. "
                         r"Model initialized randomly\.")
ACCEPTED = {
    "restore": [(r"restored \d+ image\(s\), kept \d+ finished under the same settings, "
                 r"refused 0 -> .+")],
    "score": [r"zephir metrics: [\w-]+ n/a \(weights missing\): .+",
              r"scored \d+ image\(s\) -> .+\.csv, .+\.json"],
    "train": [(r"validation \(random-init CLIP\): type accuracy \d\.\d{3}, level MAE [\d.]+, "
               r"SROCC (-?\d\.\d{3}|nan), PCC (-?\d\.\d{3}|nan)"),
              r"model: .+ \(model\.safetensors, config\.json, README\.md\)",
              r"\d+ training samples, batches of \d+( \(.+?\))?, \d+ steps( \(.+\))?",
              OPEN_CLIP_RANDOM_INIT],
    "predict": [r"image +type( +blur| +noise| +jpeg| +downsample){4}",
                r" +(p +level +value +){3}p +level +value",
                r"(chelsea|coffee)\.png +(blur|noise|jpeg|downsample)( +-?[\d.]+){12}",
                (r"note: this checkpoint's encoder \(zephir-tiny-rn\) was trained from random "
                 r"init; its numbers are not the paper's\.")],
}
# the variables that would hide a network attempt (or load a model found in the user's cache)
HIDING = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME",
          "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TORCH_HOME", "LOCAL_KERNELS", "KERNELS_CACHE",
          "PYTHONWARNINGS")


@pytest.fixture(scope="module")
def guard(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("guard")
    (folder / "sitecustomize.py").write_text(GUARD)
    return folder


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    """Two bundled photos: 128 px centre crops (HQ) and their 32 px area-downscaled LQ."""
    root = tmp_path_factory.mktemp("toy")
    for name in ("chelsea", "coffee"):
        img = datasets.embedded_image(name)
        y, x = img.shape[0] // 2 - 64, img.shape[1] // 2 - 64
        hq = img[y:y + 128, x:x + 128]
        zio.write_png(root / "hq" / f"{name}.png", hq)
        zio.write_png(root / "lq" / f"{name}.png",
                      cv2.resize(hq, (32, 32), interpolation=cv2.INTER_AREA))
    return {"hq": root / "hq", "lq": root / "lq"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random-init HD-CLIP checkpoint, as `zephir train` writes one."""
    import torch

    from zephir import checkpoints, estimator_registry
    from zephir.hdclip.model import HDCLIPConfig

    torch.manual_seed(0)
    cfg = HDCLIPConfig(arch="zephir-tiny-rn")
    return checkpoints.save_model(tmp_path_factory.mktemp("ckpt"),
                                  estimator_registry.build("hdclip", cfg),
                                  {"method": "hdclip", "hdclip": cfg.to_dict()})


def _run(args: list[str], guard: Path, cwd: Path, *, entry: str = "module"):
    """Run ARGS under the guard in an empty folder, where no weight of data/weights/ is found, as
    `python -m zephir ARGS` (entry "module", as the workflow's torchrun and backbone jobs do),
    `zephir ARGS` (entry "script", the console script) or `python ARGS` (entry "python");
    returns (completed process, network log text)."""
    log = cwd / "network.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in HIDING}
    env.update(ZEPHIR_NET_LOG=str(log), OMP_NUM_THREADS="1", HF_HOME=str(cwd / "hf-home"),
               PYTHONPATH=os.pathsep.join([str(guard), str(REPO),
                                           *filter(None, [os.environ.get("PYTHONPATH")])]))
    script = Path(sys.executable).with_name("zephir")
    if entry == "script" and not script.is_file():
        pytest.skip(f"no console script {script}: zephir is not pip-installed here")
    cmd = {"module": [sys.executable, "-m", "zephir"], "script": [str(script)],
           "python": [sys.executable]}[entry] + args
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    return done, log.read_text() if log.exists() else ""


def _foreign(text: str, accepted: list[str]) -> list[str]:
    """Lines of TEXT that none of the accepted patterns matches whole."""
    return [line for line in text.splitlines() if not any(re.fullmatch(p, line) for p in accepted)]


def _check(command: str, args: list[str], guard: Path, cwd: Path, entry: str = "module") -> str:
    done, network = _run([command, *args], guard, cwd, entry=entry)
    assert done.returncode == 0, done.stderr
    assert network == "", f"`zephir {command}` reached for the network:\n{network}"
    foreign = _foreign(done.stdout + done.stderr, ACCEPTED[command])
    assert foreign == [], f"`zephir {command}` printed lines not its own: {foreign}"
    return done.stdout + done.stderr


# --------------------------------------------------------------------------- the guard works

def test_the_guard_logs_and_refuses_a_connection(guard, tmp_path):
    done, network = _run(["-c", "import socket; socket.socket().connect(('192.0.2.1', 80))"],
                         guard, tmp_path, entry="python")
    assert done.returncode == 1 and "network blocked by tests/test_quiet.py" in done.stderr
    assert network.startswith("connect ('192.0.2.1', 80)")
    done, network = _run(["-c", "import socket; socket.getaddrinfo('example.org', 443)"],
                         guard, tmp_path, entry="python")
    assert done.returncode == 1 and network.startswith("getaddrinfo 'example.org'")


def test_plain_bitsandbytes_asks_the_hub_and_prints_its_failure(guard, tmp_path):
    """The cause (bitsandbytes/backends/cpu/ops.py 242-255 in 0.50.2): on a CPU with AVX512-BF16
    its import asks the Hub for a kernel and prints its failure. Only where that happens."""
    probe = ("from bitsandbytes.functional import has_avx512bf16; "
             "print('bf16' if has_avx512bf16() else 'no-bf16')")
    done, network = _run(["-c", probe], guard, tmp_path, entry="python")
    if done.returncode != 0 or "no-bf16" in done.stdout:
        pytest.skip("bitsandbytes is not installed, or this CPU has no AVX512-BF16")
    assert "huggingface.co" in network
    assert "Failed to load CPU gemm_4bit_forward from kernels-community" in done.stderr
    assert _foreign(done.stdout + done.stderr, ["bf16"])  # the check below would fail on it


def test_importing_zephir_first_keeps_bitsandbytes_out(guard, tmp_path):
    code = ("import zephir, sys, importlib.util; import diffusers.quantizers; "
            "from diffusers.utils import is_bitsandbytes_available; "
            "from transformers.utils import import_utils; "
            "print(sys.modules['bitsandbytes'], importlib.util.find_spec('bitsandbytes'), "
            "is_bitsandbytes_available(), import_utils.is_bitsandbytes_available())")
    done, network = _run(["-c", code], guard, tmp_path, entry="python")
    assert (done.returncode, done.stdout, done.stderr, network) == (0, "None None False False\n",
                                                                    "", "")


def test_bitsandbytes_imported_before_zephir_stays(tmp_path, guard):
    code = ("import sys, types; sys.modules['bitsandbytes'] = types.ModuleType('bitsandbytes'); "
            "import zephir; print(type(sys.modules['bitsandbytes']).__name__)")
    done, _ = _run(["-c", code], guard, tmp_path, entry="python")
    assert (done.returncode, done.stdout) == (0, "module\n")


# --------------------------------------------------------------------------- the commands

def test_restore_prints_only_its_own_lines(guard, toy, tmp_path):
    """Baseline mode (no HD-CLIP) with the embedded default's tiny backbone."""
    out = _check("restore", ["--config", str(CONFIG), "--lq", str(toy["lq"]), "--out",
                             str(tmp_path / "out"), "--mode", "baseline", "--quiet"],
                 guard, tmp_path)
    assert out.startswith("restored 2 image(s)")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["chelsea.png",
                                                                       "coffee.png"]


def test_score_prints_only_its_own_lines(guard, toy, tmp_path):
    metrics = zconfig.load(CONFIG)["metrics"]
    names = list(dict.fromkeys(metrics["with_reference"] + metrics["without_reference"]))
    out = _check("score", ["--config", str(CONFIG), "--restored", str(toy["hq"]), "--reference",
                           str(toy["hq"]), "--metrics", *names, "--out",
                           str(tmp_path / "scores.csv")], guard, tmp_path, "script")
    # the warnings that matter stay: every learned metric says its weights are missing
    missing = re.findall(r"zephir metrics: ([\w-]+) n/a \(weights missing\)", out)
    assert len(missing) == len([n for n in names if n not in ("psnr", "ssim")])


def test_train_prints_only_its_own_lines(guard, labelled, tmp_path):
    out = _check("train", ["--config", str(CONFIG), "--manifest", str(labelled), "--out",
                           str(tmp_path / "run"), "--steps", "2", "--quiet"], guard, tmp_path)
    assert "validation (random-init CLIP)" in out  # the random-init warning stays
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_predict_prints_only_its_own_lines(guard, toy, checkpoint, tmp_path):
    out = _check("predict", ["--checkpoint", str(checkpoint), str(toy["lq"] / "chelsea.png"),
                             str(toy["hq"] / "coffee.png")], guard, tmp_path, "script")
    assert "trained from random init" in out
    assert len(re.findall(r"^(chelsea|coffee)\.png ", out, re.MULTILINE)) == 2
