"""Independent references: eq. 4, 9, 10 and 11 recomputed another way (numpy, Python loops,
closed forms) than the code under test, and `zephir predict` ranking known levels."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from zephir.hdclip import losses
from zephir.hdclip import model as M

# --------------------------------------------------------------------------- eq. 4

def test_eq4_confidence_is_the_last_head_output_and_the_embedding_the_first_d():
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-vit"))
    out = m(torch.rand(2, 3, m.image_size, m.image_size), semantic=False)
    z = out.degradation.detach().double().numpy()
    d = m.embed_dim
    for k, head in enumerate(m.heads):
        w = head.weight.detach().double().numpy()          # (d + 1, d)
        b = head.bias.detach().double().numpy()
        for n in range(2):
            h = [sum(w[r, i] * z[n, i] for i in range(d)) + b[r] for r in range(d + 1)]
            e = np.array(h[:d]) / math.sqrt(sum(v * v for v in h[:d]))
            assert out.confidence[n, k].item() == pytest.approx(h[d], abs=1e-4)
            assert np.allclose(out.embeddings[n, k].detach().numpy(), e, atol=1e-5)
    # moving the last output's bias moves the confidence only, by that much
    with torch.no_grad():
        m.heads[1].bias[d] += 1.5
    moved = m(torch.zeros(1, 3, m.image_size, m.image_size), semantic=False)
    with torch.no_grad():
        m.heads[1].bias[d] -= 1.5
    base = m(torch.zeros(1, 3, m.image_size, m.image_size), semantic=False)
    assert moved.confidence[0, 1].item() == pytest.approx(base.confidence[0, 1].item() + 1.5,
                                                          abs=1e-5)
    assert torch.equal(moved.embeddings, base.embeddings)


# --------------------------------------------------------------------------- eq. 9, 10

def _slerp_np(a, b, alpha):
    theta = math.acos(max(-1.0, min(1.0, float(a @ b))))
    return (math.sin((1 - alpha) * theta) * a + math.sin(alpha * theta) * b) / math.sin(theta)


def test_eq9_value_against_numpy():
    """``-log(exp(s+) / (exp(s+) + sum_j v_j exp(s_j)))``, ``s = cos / tau``, the positive the
    slerp between the two bins around the level (eq. 8), ``v`` from eq. 10."""
    rng = np.random.default_rng(3)
    bins = [0.0, 25.0, 50.0, 75.0, 100.0]
    anchors = rng.normal(size=(2, 5, 6))
    anchors /= np.linalg.norm(anchors, axis=-1, keepdims=True)
    emb = rng.normal(size=(2, 6))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    level, tau = [37.0, 90.0], 0.2
    want = []
    for n in range(2):
        lo = max(j for j in range(4) if bins[j] <= level[n])
        alpha = (level[n] - bins[lo]) / (bins[lo + 1] - bins[lo])
        target = _slerp_np(anchors[n, lo], anchors[n, lo + 1], alpha)
        s_pos = float(emb[n] @ target) / tau
        dist = [abs(b - level[n]) for b in bins]
        v = [x / (sum(dist) / len(dist)) for x in dist]
        denom = math.exp(s_pos) + sum(v[j] * math.exp(float(emb[n] @ anchors[n, j]) / tau)
                                      for j in range(5))
        want.append(-math.log(math.exp(s_pos) / denom))
    f64 = torch.float64
    got = losses.slerp_loss(torch.tensor(emb), torch.tensor(anchors),
                            torch.tensor(level, dtype=f64), torch.tensor(bins, dtype=f64), tau=tau)
    assert got.item() == pytest.approx(sum(want) / 2, rel=1e-9)


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_eq9_positive_once_and_unweighted_closed_form(tau):
    """Orthonormal anchors, the level on bin j0 and the embedding on its anchor: s+ = 1/tau,
    every other s_j = 0 and v_j0 = 0, the v_j summing to J. So
    ``L = log(1 + J exp(-1/tau))``; a positive counted twice would give log(2 + ...) - log 2,
    a weighted one (v_j0 = 0) an infinite loss. (The code floors v at 1e-12 before its log:
    hence the relative tolerance.)"""
    j_count, j0 = 5, 2
    anchors = torch.eye(j_count, 8, dtype=torch.float64)
    bins = torch.tensor([0.0, 25.0, 50.0, 75.0, 100.0], dtype=torch.float64)
    got = losses.slerp_loss(anchors[j0][None], anchors[None], bins[j0][None], bins, tau=tau)
    assert got.item() == pytest.approx(math.log(1 + j_count * math.exp(-1 / tau)), rel=1e-7)


def test_eq10_against_python():
    bins = [float(b) for b in range(0, 101, 10)]
    for level in (0.0, 33.0, 50.0, 100.0):
        dist = [abs(b - level) for b in bins]
        mean = sum(dist) / len(dist)
        got = losses.ordinal_weights(torch.tensor([level], dtype=torch.float64),
                                     torch.tensor(bins, dtype=torch.float64))[0]
        assert got.tolist() == pytest.approx([x / mean for x in dist], rel=1e-12)


# --------------------------------------------------------------------------- eq. 11

def test_eq11_lambda_weighting():
    """level / slerp: lambda * share (means over a rank's present pairs); align (ablation A,
    also such a mean, no lambda): share; semantic / clip: their lambdas; conf and a baseline's
    own term: weight 1."""
    from zephir.training.loop import TrainConfig, weighted

    cfg = TrainConfig(lambda_level=0.05, lambda_slerp=0.7, lambda_semantic=0.3,
                      lambda_clip=0.2)
    share = torch.tensor(0.37)
    raw = {"conf": 1.1, "level": 2.2, "slerp": 3.3, "semantic": 4.4, "clip": 5.5,
           "contrastive": 6.6, "align": 7.7}
    got = weighted({k: torch.tensor(v) for k, v in raw.items()}, cfg, share)
    want = {"conf": 1.1, "level": 0.05 * 0.37 * 2.2, "slerp": 0.7 * 0.37 * 3.3,
            "semantic": 0.3 * 4.4, "clip": 0.2 * 5.5, "contrastive": 6.6, "align": 0.37 * 7.7}
    assert got.keys() == want.keys()
    for k, value in want.items():
        assert got[k].item() == pytest.approx(value, rel=1e-6), k


# --------------------------------------------------------------------------- zephir predict

TRAIN_PHOTOS = ("kodim03", "kodim04", "kodim06", "kodim08", "chelsea", "coffee",
                "motorcycle_left", "china", "flower", "brick", "grass", "gravel")
HELD_OUT = ("astronaut", "camera", "kodim19")


def _noisy(img: np.ndarray, level: float, rng) -> tuple[np.ndarray, float]:
    from zephir import io as zio
    from zephir.degrade import levels, ops

    value, level = levels.realizable("noise", level)
    return zio.to_uint8(ops.apply(zio.to_float(img), {"noise": value}, rng)), level


def _fit_noise_readout(m: M.HDCLIP, rng, crops_per_photo: int = 12, steps: int = 250):
    """Train HD-CLIP briefly for noise levels, the cheap way: the tower keeps its random
    weights (its BatchNorm statistics read from the training crops, as training would set
    them), the heads and the shift learn through eq. 5, 7 and 9 on the tower's features."""
    from zephir import datasets

    images, lv = [], []
    for name in TRAIN_PHOTOS:
        img = datasets.embedded_image(name)
        for _ in range(crops_per_photo):
            y, x = rng.integers(0, img.shape[0] - 128), rng.integers(0, img.shape[1] - 128)
            px, level = _noisy(img[y:y + 128, x:x + 128], rng.uniform(0, 100), rng)
            images.append(px)
            lv.append(level)
    x = m.normalize(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255)
    x = x.contiguous(memory_format=torch.channels_last)
    for bn in m.degradation_branch.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.reset_running_stats()
            bn.momentum = None                      # a plain mean over the crops
    with torch.no_grad():
        m.degradation_branch.train()(x)
        m.eval()
        z = m.degradation_branch(x)
    k = m.cfg.types.index("noise")
    present = torch.zeros(len(lv), len(m.cfg.types))
    present[:, k] = 1
    level = torch.zeros_like(present)
    level[:, k] = torch.tensor(lv)
    opt = torch.optim.AdamW([*m.heads.parameters(), m.shift], lr=1e-2, weight_decay=0.05)
    for _ in range(steps):
        emb, conf = m.type_embeddings(z)
        anchors = m.anchors()
        out = M.HDCLIPOutput(semantic=z, degradation=z, embeddings=emb, confidence=conf,
                             levels=m.levels(emb, anchors), anchors=anchors)
        t = m.loss_terms(out, present, level, terms=["conf", "level", "slerp"])
        opt.zero_grad()
        (t["conf"] + 0.05 * t["level"] + t["slerp"]).backward()
        opt.step()
    return m.eval()


def test_predict_ranks_noise_levels_of_unseen_photos(tmp_path, one_torch_thread, capsys):
    """`zephir predict` on photos never seen in training, each noised at four known levels:
    the predicted noise levels rank with the truth (rank correlation >= 0.85 pooled, >= 0.8 on
    average per photo)."""
    from zephir import checkpoints, cli, datasets
    from zephir import io as zio

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = M.HDCLIPConfig(arch="zephir-tiny-rn")
    m = _fit_noise_readout(M.build(cfg), rng)
    ckpt = checkpoints.save_model(tmp_path / "model", m, {"method": "hdclip", "step": 250,
                                                          "hdclip": cfg.to_dict()})
    truth, files = [], []
    for name in HELD_OUT:
        img = datasets.embedded_image(name)
        img = np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img
        for level in (5.0, 35.0, 65.0, 95.0):
            px, level = _noisy(img[60:260, 60:320], level, rng)    # 200 x 260: six crops
            files.append(tmp_path / f"{name}_{level:.0f}.png")
            zio.write_png(files[-1], px)
            truth.append(level)
    assert cli.main(["predict", "--checkpoint", str(ckpt), "--json", *map(str, files)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["image"] for r in rows] == list(map(str, files))
    pred = [r["degradations"]["noise"]["level"] for r in rows]
    assert all(r["type"] == "noise" for r in rows)
    assert spearmanr(truth, pred)[0] >= 0.85, (truth, pred)
    per_photo = [spearmanr(truth[i:i + 4], pred[i:i + 4])[0] for i in range(0, len(pred), 4)]
    assert np.mean(per_photo) >= 0.8, per_photo
