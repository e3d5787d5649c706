"""The trainer's data path: whole-batch flips, loader workers, semantic targets, captions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zephir import io as zio
from zephir.degrade.synth import read_manifest
from zephir.training.batches import (FLIP_STATES, LabelledSet, SemanticTable, StepBatches,
                                     batches, caption_of, compose, composed_indices, flip,
                                     flip_states, hq_targets, read_captions)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TYPES = ("blur", "noise", "jpeg", "downsample")


def test_flip_is_the_per_image_flip_of_each_state():
    images = torch.randint(0, 256, (8, 3, 5, 7), dtype=torch.uint8)
    states = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    got = flip(images, states).numpy()
    for i, s in enumerate(states.tolist()):
        ref = images[i].numpy()
        if s >= 2:
            ref = ref[:, :, ::-1]  # horizontal: the width axis
        if s % 2:
            ref = ref[:, ::-1, :]  # vertical: the height axis
        assert np.array_equal(got[i], ref), s


def test_ranks_draw_their_share_of_one_process_flips():
    """Flips are a function of (seed, step): rank r of W sees what one process sees."""
    whole = flip_states(11, seed=3, offset=0, n=8)
    assert torch.equal(torch.cat([flip_states(11, 3, 4 * r, 4) for r in range(2)]), whole)
    assert set(whole.tolist()) <= set(range(FLIP_STATES))
    assert not torch.equal(whole, flip_states(12, seed=3, offset=0, n=8))


def test_step_batches_split_each_global_batch_between_ranks():
    one = list(StepBatches(30, 8, seed=1, start=2, steps=6))
    two = [list(StepBatches(30, 8, seed=1, start=2, steps=6, rank=r, world=2))
           for r in range(2)]
    assert len(one) == 4
    for s in range(4):
        assert np.array_equal(np.concatenate([two[0][s], two[1][s]]), one[s])


@pytest.mark.parametrize("device", DEVICES)
def test_loader_workers_deliver_the_cached_batches(labelled, device):
    rows = read_manifest(labelled, "train")
    cached = LabelledSet(labelled.parent, rows, TYPES, cache=True)
    disk = LabelledSet(labelled.parent, rows, TYPES, cache=False)
    order = StepBatches(len(rows), 8, seed=5, start=0, steps=4)
    dev = torch.device(device)
    a = list(batches(cached, order, workers=0, device=dev))
    b = list(batches(disk, order, workers=2, device=dev))
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert x[0].device.type == device and x[0].dtype == torch.uint8
        for u, v in zip(x, y):
            assert torch.equal(u.cpu(), v.cpu())
    # and each sample is the image file its manifest row names
    first = a[0][3][0].item()
    ref = zio.load_image(labelled.parent / rows[first]["path"]).pixels.transpose(2, 0, 1)
    assert np.array_equal(a[0][0][0].cpu().numpy(), ref)


def test_semantic_targets_follow_the_flips_and_mark_same_photo_pairs(labelled, photo_dir,
                                                                     tmp_path):
    from zephir import datasets
    from zephir.hdclip.model import HDCLIPConfig, build

    rows = read_manifest(labelled, "train")[:6]
    index = tmp_path / "sources.csv"
    datasets.write_index(index, sorted(photo_dir.glob("*.png")))
    model = build(HDCLIPConfig(arch="zephir-tiny-vit")).eval()
    hq = hq_targets(model, rows, index, "cpu", batch=4)
    group = torch.tensor([0, 0, 1, 1, 2, 0])
    targets = SemanticTable(hq, None, group)
    idx, states = torch.tensor([5, 0, 2]), torch.tensor([3, 1, 2])
    got = targets.pick(idx, states, "cpu")
    for n, (i, s) in enumerate(zip(idx.tolist(), states.tolist())):
        r = rows[i]
        src = zio.load_image(photo_dir / r["source"]).pixels
        x, y, c = int(r["crop_x"]), int(r["crop_y"]), int(r["crop_size"])
        crop = src[y:y + c, x:x + c]
        crop = crop[:, ::-1] if s >= 2 else crop
        crop = crop[::-1] if s % 2 else crop
        img = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            ref = model.encode_semantic(model.normalize(img))[0]
        assert torch.allclose(got.image[n], ref, atol=1e-5), (i, s)
    assert got.text is None
    assert got.same.tolist() == [[True, True, False], [True, True, False],
                                 [False, False, True]]


def test_captions_are_read_in_dacips_layout_and_missing_ones_are_named(tmp_path):
    tab = tmp_path / "daclip_train.csv"
    tab.write_text("filepath\ttitle\n/data/hq/0001.png\ta red boat on a lake\n"
                   "/data/hq/0002.png\ttwo cats, sleeping\n")
    caps = read_captions(tab)
    assert caps["0001.png"] == caps["0001"] == "a red boat on a lake"
    assert caps["0002"] == "two cats, sleeping"
    comma = tmp_path / "c.csv"
    comma.write_text('filepath,title\n0003.jpg,"a bridge, at night"\n')
    assert read_captions(comma)["0003"] == "a bridge, at night"
    rows = [{"source": "0001.png"}, {"source": "0003.png"}]
    with pytest.raises(ValueError, match="no caption for 1 training source.*0003.png"):
        caption_of(rows, caps, tab)
    assert caption_of(rows[:1], caps, tab) == ["a red boat on a lake"]
    bad = tmp_path / "bad.csv"
    bad.write_text("path\tcaption\nx.png\ty\n")
    with pytest.raises(ValueError, match="bad.csv: .*'filepath' and 'title'"):
        read_captions(bad)


# ------------------------------------------------------------------ type-balanced batches

def _presence(singles: dict[int, int], mixtures: int) -> torch.Tensor:
    """Presence labels: ``singles[k]`` samples of type k alone, then ``mixtures`` of types
    0 and 2, in a shuffled order (so that pools are not contiguous ranges)."""
    rows = [k for k, n in singles.items() for _ in range(n)] + [-1] * mixtures
    order = np.random.default_rng(0).permutation(len(rows))
    present = torch.zeros(len(rows), len(TYPES))
    for i, j in enumerate(order):
        if rows[j] == -1:
            present[i, [0, 2]] = 1
        else:
            present[i, rows[j]] = 1
    return present


def test_every_composed_batch_holds_batch_per_type_of_each_type_in_turn():
    """Pools of unequal sizes (7, 9, 5, 12 singles, 11 mixtures), 3 per type: every step's
    batch has exactly 3 of each type, in turn, then the mixtures' share of the set
    (3 * 4 * 11 / 33 = 4); within a group no sample repeats before its pool is used up."""
    present = _presence({0: 7, 1: 9, 2: 5, 3: 12}, 11)
    comp = compose(present, TYPES, 3)
    assert comp.mixtures == 4 and comp.batch == 16
    kind = [int(r.argmax()) if r.sum() == 1 else -1 for r in present]
    seen = {k: [] for k in (0, 1, 2, 3, -1)}
    for step in range(12):
        idx = composed_indices(step, comp, seed=5)
        assert len(idx) == 16
        assert [kind[i] for i in idx] == [0, 1, 2, 3] * 3 + [-1] * 4
        for i in idx:
            seen[kind[i]].append(int(i))
    for k, size in {0: 7, 1: 9, 2: 5, 3: 12, -1: 11}.items():
        pool = set(np.flatnonzero([x == k for x in kind]).tolist())
        drawn = seen[k]
        assert set(drawn) == pool  # 36 or 48 draws cover every sample of the pool
        for start in range(0, len(drawn) - size + 1, size):  # one pass = a permutation
            assert sorted(drawn[start:start + size]) == sorted(pool), k
    # a function of (seed, step) only
    assert np.array_equal(composed_indices(7, comp, 5), composed_indices(7, comp, 5))
    assert not np.array_equal(composed_indices(7, comp, 5), composed_indices(7, comp, 6))


def test_a_set_of_single_types_only_has_no_mixtures_and_a_missing_type_is_named():
    assert compose(_presence({0: 4, 1: 4, 2: 4, 3: 4}, 0), TYPES, 2).batch == 8
    with pytest.raises(ValueError, match="no single-type sample of jpeg"):
        compose(_presence({0: 4, 1: 4, 3: 4}, 2), TYPES, 2)


def test_ranks_split_each_composed_batch_as_one_process_sees_it():
    comp = compose(_presence({0: 7, 1: 9, 2: 5, 3: 12}, 0), TYPES, 4)
    one = list(StepBatches(33, 16, seed=2, start=3, steps=9, composition=comp))
    two = [list(StepBatches(33, 16, seed=2, start=3, steps=9, rank=r, world=2,
                            composition=comp)) for r in range(2)]
    assert len(one) == 6
    for s in range(6):
        assert np.array_equal(np.concatenate([two[0][s], two[1][s]]), one[s])
        assert np.array_equal(one[s], composed_indices(3 + s, comp, 2))
    with pytest.raises(ValueError, match="batch 12 is not the composition's 16"):
        StepBatches(33, 12, seed=2, start=0, steps=1, composition=comp)


def test_a_missing_captions_file_is_named_with_how_to_make_one(tmp_path):
    missing = tmp_path / "daclip_train.csv"
    with pytest.raises(FileNotFoundError) as info:
        read_captions(missing)
    assert str(missing) in str(info.value)
    assert "'filepath<TAB>title'" in str(info.value) and "generate_captions.py" in str(info.value)
