"""The transfer evaluation (issue 14): `zephir transfer-set` and `zephir evaluate --transfer`,
checked against `zephir predict` (the path it must read through) and against per-photo
correlations recomputed with pandas."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from zephir import cli
from zephir.degrade import levels
from zephir.hdclip.model import HDCLIPConfig
from zephir.training import TrainConfig, train

PER_TYPE = 3
CROPS = ["--crop-sizes", "96", "140"]  # the test photos are halved: short sides 150-256


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def transfer_set(photo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "set"
    assert cli.main(["transfer-set", "--images", str(photo_dir), "--out", str(out),
                     "--per-type", str(PER_TYPE), "--seed", "5", *CROPS]) == 0
    return out / "manifest.csv"


@pytest.fixture(scope="module")
def models(labelled, tmp_path_factory):
    """Briefly trained tiny HD-CLIP and MM-RealSR-style checkpoints."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for method in ("hdclip", "mmrealsr_style"):
        train(labelled, root / method, HDCLIPConfig(arch="zephir-tiny-rn"),
              TrainConfig(steps=3, batch_size=8, eval_every=100, checkpoint_every=100),
              method=method, progress=False)
        out[method] = root / method / "model.safetensors"
    return out


def test_transfer_set_is_seeded_and_labelled(transfer_set, photo_dir, tmp_path):
    rows = pd.read_csv(transfer_set)
    photos = sorted(p.stem for p in photo_dir.glob("*.png"))
    assert len(rows) == len(photos) * len(levels.LABEL_ORDER) * PER_TYPE
    assert sorted(rows["source"].unique()) == photos
    assert (rows["split"] == "val").all() and rows["crop_size"].between(96, 140).all()
    for kind in levels.LABEL_ORDER:
        mine = rows[rows["types"] == kind]
        assert mine[f"{kind}_level"].between(0, 100).all()
        others = [f"{k}_level" for k in levels.LABEL_ORDER if k != kind]
        assert mine[others].isna().all().all()
    # the same command twice: the same bytes; another seed: other samples
    again = tmp_path / "again"
    assert cli.main(["transfer-set", "--images", str(photo_dir), "--out", str(again),
                     "--per-type", str(PER_TYPE), "--seed", "5", *CROPS]) == 0
    assert _digest(again) == _digest(transfer_set.parent)
    other = tmp_path / "other"
    assert cli.main(["transfer-set", "--images", str(photo_dir), "--out", str(other),
                     "--per-type", str(PER_TYPE), "--seed", "6", *CROPS]) == 0
    assert (pd.read_csv(other / "manifest.csv")["seed"] != rows["seed"]).all()


@pytest.mark.parametrize("method", ["hdclip", "mmrealsr_style"])
def test_evaluate_transfer_reads_images_as_predict_does(method, models, transfer_set,
                                                        tmp_path, capsys):
    """Every level in predictions.csv is what `zephir predict --json` says of that PNG (the
    full-image path: crops of the model's input size averaged), HD-CLIP and baseline alike."""
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--transfer", "--checkpoint", str(models[method]),
                     "--manifest", str(transfer_set), "--out", str(out)]) == 0
    capsys.readouterr()
    table = pd.read_csv(out / "predictions.csv")
    result = json.loads((out / "metrics.json").read_text())
    assert result["samples"] == "transfer" and result["method"] == method
    files = [str(transfer_set.parent / p) for p in table["path"]]
    assert cli.main(["predict", "--json", "--checkpoint", str(models[method]), *files]) == 0
    said = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["image"] for s in said] == files
    for (_, row), s in zip(table.iterrows(), said):
        modelled = set(s["degradations"])
        for kind in levels.LABEL_ORDER:
            if kind in modelled:  # predict rounds to 2 decimals, predictions.csv to 4
                assert row[f"{kind}_pred"] == pytest.approx(s["degradations"][kind]["level"],
                                                            abs=0.006)
            else:
                assert np.isnan(row[f"{kind}_pred"])
        if method == "hdclip":
            assert row["pred_type"] == s["type"]
    if method == "mmrealsr_style":  # two types of four: no type, levels that are degrees
        assert modelled == {"blur", "noise"} and said[0]["method"] == "mmrealsr_style"
        assert all(s["type"] is None and s["level_scale"] is False for s in said)
        assert table["pred_type"].isna().all()


def test_full_image_reads_each_image_on_its_own(models, transfer_set):
    """A baseline's crop averages do not mix images: two images read together give what each
    gives alone, whatever the batch the crops are cut into."""
    import torch

    from zephir import checkpoints
    from zephir import io as zio
    from zephir.hdclip.predict import full_image

    model, _ = checkpoints.load_pretrained(models["mmrealsr_style"])
    rows = pd.read_csv(transfer_set)
    imgs = [zio.load_image(transfer_set.parent / p).pixels for p in rows["path"][:3]]
    assert len({im.shape for im in imgs}) > 1  # images of different sizes, different crop counts
    scores, lv = full_image(model, imgs, batch=5)
    for i, img in enumerate(imgs):
        s1, l1 = full_image(model, [img], batch=64)
        torch.testing.assert_close(scores[i], s1[0], equal_nan=True)
        torch.testing.assert_close(lv[i], l1[0], equal_nan=True)
    assert torch.isnan(lv[:, 2:]).all() and not torch.isnan(lv[:, :2]).any()


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")  # a 3-sample photo
def test_per_photo_srocc_recomputed_with_pandas(models, transfer_set):
    """evaluate_table's per-photo and pooled SROCCs against pandas' Spearman on the same
    (full-precision) predictions."""
    from zephir import checkpoints, estimator_evaluation
    from zephir.metrics.estimation import evaluate_table

    model, _ = checkpoints.load_pretrained(models["hdclip"])
    table, arrays = estimator_evaluation.evaluate(model, transfer_set, full_image=True)
    assert arrays == {}
    metrics = evaluate_table(table, model.cfg.types)
    per_photo = metrics["per_photo"]
    assert set(per_photo) == set(levels.LABEL_ORDER)
    for kind in levels.LABEL_ORDER:
        mine = table[table["types"] == kind]
        expect = {photo: g[f"{kind}_pred"].corr(g[f"{kind}_true"], method="spearman")
                  for photo, g in mine.groupby("source")}
        assert set(per_photo[kind]) == set(expect)
        for photo, rho in expect.items():
            got = per_photo[kind][photo]
            assert (np.isnan(rho) and np.isnan(got)) or got == pytest.approx(rho, abs=1e-9)
        finite = [v for v in expect.values() if not np.isnan(v)]
        assert metrics["per_photo_mean"][kind] == pytest.approx(np.mean(finite), abs=1e-9)
        pooled = mine[f"{kind}_pred"].corr(mine[f"{kind}_true"], method="spearman")
        assert metrics["single"][f"{kind}_srocc"] == pytest.approx(pooled, abs=1e-9)


def test_transfer_set_through_the_crop_path_is_a_clear_error(models, transfer_set, tmp_path,
                                                             capsys):
    assert cli.main(["evaluate", "--checkpoint", str(models["hdclip"]), "--manifest",
                     str(transfer_set), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(transfer_set) in err and "--transfer" in err
