"""Image quality metrics through pyiqa: conventions against scikit-image, weights loading from
stand-in files (no network), missing weights as NaN + "n/a", and the written tables."""
from __future__ import annotations

import json
import math
import os
import stat
import time

import cv2
import numpy as np
import pytest
import torch
from scipy import io as sio
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from zephir import datasets
from zephir import io as zio
from zephir.metrics import iqa

PHOTOS = ("astronaut", "coffee", "chelsea")


def _crop(name: str, size: int) -> np.ndarray:
    img = datasets.embedded_image(name)
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[(h - size) // 2:(h + size) // 2,
                                    (w - size) // 2:(w + size) // 2])


def _degrade(img: np.ndarray, seed: int) -> np.ndarray:
    noisy = cv2.GaussianBlur(img, (5, 5), 1.2).astype(np.float64)
    noisy += np.random.default_rng(seed).normal(0.0, 6.0, img.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _folders(root, size: int, names=PHOTOS):
    ref, out = root / "ref", root / "out"
    for i, name in enumerate(names):
        img = _crop(name, size)
        zio.write_png(ref / f"{name}.png", img)
        zio.write_png(out / f"{name}.png", _degrade(img, i))
    return out, ref


@pytest.fixture(scope="module")
def pairs64(tmp_path_factory):
    return _folders(tmp_path_factory.mktemp("iqa64"), 64)


@pytest.fixture(scope="module")
def restored192(tmp_path_factory):
    """NIQE needs 96x96 blocks: 192 px crops give four of them (two photos: NIQE and BRISQUE
    take about a second per image)."""
    return _folders(tmp_path_factory.mktemp("iqa192"), 192, PHOTOS[:2])[0]


@pytest.fixture
def torch_hub_restored():
    """Tests that point torch.hub somewhere give it back afterwards."""
    before = torch.hub.get_dir()
    yield
    torch.hub.set_dir(before)


def _absent(tmp_path) -> dict:
    """A weights section whose every file is absent."""
    return {"torch_home": str(tmp_path / "torch"), **{
        k: str(tmp_path / "absent" / k) for k in ("lpips", "musiq", "niqe", "brisque")}}


def test_psnr_ssim_match_scikit_image(pairs64):
    """Y of YCbCr (BT.601): PSNR with data range 1 on the unrounded Y / 255, SSIM with a
    Gaussian window (sigma 1.5, 11 px), population covariance and data range 255 on the
    rounded 0-255 Y. Residual: pyiqa works in float32 (PSNR ~1e-4 dB) and rounds Y computed
    in float32 (SSIM ~1e-6)."""
    out, ref = pairs64
    df = iqa.score_folder(out, ref, ["psnr", "ssim"], device="cpu")
    assert list(df["image"]) == [f"{n}.png" for n in sorted(PHOTOS)]
    for _, row in df.iterrows():
        y_out = rgb2ycbcr(zio.load_image(out / row["image"]).pixels)[..., 0]
        y_ref = rgb2ycbcr(zio.load_image(ref / row["image"]).pixels)[..., 0]
        assert row["psnr"] == pytest.approx(
            peak_signal_noise_ratio(y_ref / 255, y_out / 255, data_range=1.0), abs=1e-3)
        assert row["ssim"] == pytest.approx(structural_similarity(
            np.rint(y_ref), np.rint(y_out), data_range=255, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False), abs=1e-4)
    means = iqa.summarize(df)
    assert means["psnr"] == pytest.approx(df["psnr"].mean())
    assert 15 < means["psnr"] < 45 and 0 < means["ssim"] < 1


def test_pyiqa_default_y_is_yiq_luma():
    """What CONVENTIONS says of NIQE and BRISQUE: pyiqa's default Y is YIQ's luma."""
    from pyiqa.utils.color_util import to_y_channel

    img = _crop("coffee", 32)
    y = to_y_channel(torch.from_numpy(img).permute(2, 0, 1)[None].double() / 255, 255.0)
    expected = np.rint(img.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_allclose(y[0, 0].numpy(), expected, atol=1.0)
    assert np.mean(y[0, 0].numpy() == expected) > 0.99


def test_metric_table_agrees_with_pyiqa():
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for name, m in iqa.METRICS.items():
        cfg = DEFAULT_CONFIGS[m.pyiqa]
        assert m.lower_better == cfg.get("lower_better", False), name
        assert m.full_reference == (cfg["metric_mode"] == "FR"), name
    assert set(iqa.CONVENTIONS) == set(iqa.METRICS)


def test_missing_weights_give_nan_na_and_one_line_each(pairs64, tmp_path, capfd, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    out, ref = pairs64
    section = _absent(tmp_path)
    start = time.perf_counter()
    df = iqa.score_folder(out, ref, ["lpips", "musiq", "qalign", "niqe", "brisque"],
                          device="cpu", weights_section=section)
    assert time.perf_counter() - start < 2.0
    assert df.drop(columns="image").isna().all().all() and len(df) == len(PHOTOS)
    assert set(iqa.summarize(df).values()) == {iqa.NOT_AVAILABLE}
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("zephir metrics")]
    assert len(lines) == 5
    for label, key in (("LPIPS", "lpips"), ("MUSIQ", "musiq"), ("NIQE", "niqe"),
                       ("BRISQUE", "brisque")):
        (line,) = [ln for ln in lines if f" {label} " in ln]
        assert iqa.NOT_AVAILABLE in line and section[key] in line and "hf download" in line
    (qalign,) = [ln for ln in lines if " Q-Align " in ln]
    assert "q-future/one-align" in qalign
    lpips_line = next(ln for ln in lines if " LPIPS " in ln)
    assert "alexnet-owt-7be5be79.pth" in lpips_line  # both missing LPIPS files, one line


def test_available_before_any_download(tmp_path):
    ok, reason = iqa.available("musiq", _absent(tmp_path))
    assert not ok and "weights.musiq" in reason
    assert iqa.available("psnr", None) == (True, "no weights needed")
    with pytest.raises(FileNotFoundError, match="weights.niqe"):
        iqa.create("niqe", device="cpu", weights_section=_absent(tmp_path))
    with pytest.raises(ValueError, match="unknown metric"):
        iqa.available("fid", None)


def _niqe_params(path, shift: float) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(36, 36))
    sio.savemat(path, {"mu_prisparam": rng.normal(size=(1, 36)) + shift,
                       "cov_prisparam": a @ a.T / 36 + np.eye(36)})


def test_niqe_and_brisque_load_stand_in_weights(restored192, tmp_path):
    """Stand-in parameter files of the right keys and shapes, read through
    pretrained_model_path; scores react to the file's contents as the formulas say."""
    rng = np.random.default_rng(1)
    sv = torch.from_numpy(rng.normal(size=(20, 36)) * 0.1)
    coef = torch.from_numpy(rng.uniform(0.5, 1.0, 20))
    (tmp_path / "w").mkdir()
    files = {"near.mat": 0.0, "far.mat": 50.0}
    for fname, shift in files.items():
        _niqe_params(tmp_path / "w" / fname, shift)
    for fname, c in (("zero.pth", coef * 0), ("one.pth", coef), ("two.pth", coef * 2)):
        torch.save((c, sv), tmp_path / "w" / fname)

    def run(niqe: str, brisque: str, metrics=("niqe", "brisque")):
        section = {**_absent(tmp_path), "niqe": str(tmp_path / "w" / niqe),
                   "brisque": str(tmp_path / "w" / brisque)}
        assert iqa.available("niqe", section)[0] and iqa.available("brisque", section)[0]
        return iqa.score_folder(restored192, None, metrics, device="cpu",
                                weights_section=section)

    near, far = run("near.mat", "zero.pth"), run("far.mat", "one.pth")
    two = run("near.mat", "two.pth", ["brisque"])
    assert np.isfinite(near["niqe"]).all() and (far["niqe"] > near["niqe"]).all()
    rho = -153.591  # pyiqa's 'original' BRISQUE: score = K(features, sv) @ sv_coef - rho
    np.testing.assert_allclose(near["brisque"], -rho, rtol=1e-6)
    np.testing.assert_allclose(two["brisque"] + rho, 2 * (far["brisque"] + rho), rtol=1e-5)
    assert (far["brisque"] + rho > 0).all()


def _standin_lpips(tmp_path, torch_home) -> dict[float, object]:
    """torchvision AlexNet of random weights in torch_home (the classifier, which LPIPS does
    not use, stored as an expanded scalar so that the file stays small), and LPIPS linear
    layers of random non-negative weights, times 1 and times 2, in two files."""
    from pyiqa.archs.lpips_arch import LPIPS
    from torchvision.models import alexnet

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in alexnet().state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    ckpt = torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save({k: torch.randn(s, generator=gen) * 0.05 if k.startswith("features")
                else torch.zeros(1).expand(s) for k, s in shapes.items()}, ckpt)
    torch.hub.set_dir(str(torch_home / "hub"))
    lins = {k: v.abs() for k, v in LPIPS(pretrained=False).state_dict().items()
            if k.startswith("lin")}
    files = {}
    for scale in (1.0, 2.0):
        files[scale] = tmp_path / f"lpips_x{scale:g}.pth"
        torch.save({k: v * scale for k, v in lins.items()}, files[scale])
    return files


def test_lpips_loads_stand_in_weights(pairs64, tmp_path, torch_hub_restored):
    """LPIPS is linear in its layer weights: twice the weights, twice the score."""
    out, ref = pairs64
    home = tmp_path / "torch"
    files = _standin_lpips(tmp_path, home)
    torch.hub.set_dir(str(tmp_path / "elsewhere"))  # create() must find torch_home itself
    scores = {}
    for scale, path in files.items():
        section = {**_absent(tmp_path), "torch_home": str(home), "lpips": str(path)}
        assert iqa.available("lpips", section) == (True, "weights found")
        scores[scale] = iqa.score_folder(out, ref, ["lpips"], device="cpu",
                                         weights_section=section)["lpips"].to_numpy()
        assert torch.hub.get_dir() == str(tmp_path / "elsewhere")
    assert (scores[1.0] > 0).all()
    np.testing.assert_allclose(scores[2.0], 2 * scores[1.0], rtol=1e-5)
    metric = iqa.create("lpips", device="cpu", weights_section=section)
    x = torch.from_numpy(_crop("coffee", 64)).permute(2, 0, 1)[None].float() / 255
    assert float(metric(x, x)) == 0.0


def test_matching_errors(pairs64, tmp_path):
    out, ref = pairs64
    small = tmp_path / "small"
    for name in PHOTOS:
        zio.write_png(small / f"{name}.png", _crop(name, 32))
    with pytest.raises(ValueError, match="size mismatch") as err:
        iqa.score_folder(small, ref, ["psnr"], device="cpu")
    assert str(small) in str(err.value) and str(ref) in str(err.value)
    partial = tmp_path / "partial"
    zio.write_png(partial / "astronaut.png", _crop("astronaut", 64))
    with pytest.raises(ValueError, match="coffee"):
        iqa.score_folder(partial, ref, ["psnr"], device="cpu")
    with pytest.raises(ValueError, match="reference folder"):
        iqa.score_folder(out, None, ["ssim"], device="cpu")


def test_write_scores_tidy_csv_and_json(pairs64, tmp_path):
    import pandas as pd

    out, ref = pairs64
    df = iqa.score_folder(out, ref, ["psnr", "brisque"], device="cpu",
                          weights_section=_absent(tmp_path))
    csv, js = iqa.write_scores(df, tmp_path / "scores" / "div2k.csv", meta={"run": "test"})
    back = pd.read_csv(csv)
    assert list(back.columns) == ["image", "psnr", "brisque"] and back["brisque"].isna().all()
    np.testing.assert_allclose(back["psnr"], df["psnr"])
    summary = json.loads(js.read_text())
    assert js.name == "div2k.json" and summary["meta"] == {"run": "test"}
    assert summary["means"]["psnr"] == pytest.approx(df["psnr"].mean())
    assert summary["means"]["brisque"] == iqa.NOT_AVAILABLE
    assert summary["conventions"]["psnr"] == iqa.CONVENTIONS["psnr"]
    assert "weights.brisque" in summary["unavailable"]["brisque"]
    umask = os.umask(0)
    os.umask(umask)
    for path in (csv, js):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in csv.parent.iterdir()) == ["div2k.csv", "div2k.json"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_scores_equal_cpu(pairs64):
    out, ref = pairs64
    cpu = iqa.score_folder(out, ref, ["psnr", "ssim"], device="cpu")
    gpu = iqa.score_folder(out, ref, ["psnr", "ssim"], device="cuda")
    np.testing.assert_allclose(gpu["psnr"], cpu["psnr"], atol=1e-3)
    np.testing.assert_allclose(gpu["ssim"], cpu["ssim"], atol=1e-5)
    assert not math.isnan(gpu["ssim"].mean())
