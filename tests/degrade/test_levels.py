"""Levels: 0..100 normalisation of the paper's native ranges."""
from __future__ import annotations

import numpy as np
import pytest

from zephir.degrade import levels


@pytest.mark.parametrize("kind", levels.LABEL_ORDER)
def test_normalize_denormalize_roundtrip(kind):
    lv = np.linspace(0, 100, 101)
    np.testing.assert_allclose(levels.normalize(kind, levels.denormalize(kind, lv)), lv,
                               atol=1e-9)


@pytest.mark.parametrize("kind,lo,hi", [("blur", 0.1, 4.0), ("noise", 1, 40),
                                        ("jpeg", 95, 30), ("downsample", 1.1, 7.0)])
def test_range_ends(kind, lo, hi):
    assert levels.normalize(kind, lo) == pytest.approx(0.0)
    assert levels.normalize(kind, hi) == pytest.approx(100.0)


def test_jpeg_severity_grows_as_quality_falls():
    assert levels.normalize("jpeg", 95) == 0.0
    assert levels.normalize("jpeg", 30) == 100.0
    assert levels.normalize("jpeg", 62.5) == pytest.approx(50.0)


def test_out_of_range_values_and_levels_are_refused():
    with pytest.raises(ValueError, match=r"blur: sigma=5\.0 is outside the range 0\.1\.\.4"):
        levels.normalize("blur", 5.0)
    with pytest.raises(ValueError, match="outside 0..100"):
        levels.denormalize("noise", 101)
    with pytest.raises(ValueError, match="unknown degradation type 'rain'"):
        levels.normalize("rain", 1)


def test_jpeg_levels_snap_to_integer_quality():
    value, level = levels.realizable("jpeg", 37.0)
    assert value == round(95 - 0.37 * 65)
    assert level == pytest.approx(levels.normalize("jpeg", value))
    assert levels.realizable("blur", 37.0) == (pytest.approx(0.1 + 0.37 * 3.9), 37.0)


# Interior points (issue 29): a map that keeps its ends but bends in between must fail. The
# native ranges are the paper's (section 4.1: blur sigma [0.1, 4.0], noise [1, 40], JPEG quality
# [30, 95], downsampling scale [1.1, 7.0]); each expected level is worked by hand from
# l = 100 (v - v_min) / (v_max - v_min) (jpeg: 100 (q_max - q) / (q_max - q_min)).
INTERIOR = [
    ("blur", 1.0, 100 * 0.9 / 3.9),          # 23.0769...
    ("blur", 3.02, 100 * 2.92 / 3.9),        # 74.8718...
    ("noise", 10.0, 100 * 9 / 39),           # 23.0769...
    ("noise", 30.25, 75.0),                  # 29.25 / 39
    ("jpeg", 80.0, 100 * 15 / 65),           # 23.0769...
    ("jpeg", 43.0, 80.0),                    # 52 / 65
    ("downsample", 2.0, 100 * 0.9 / 5.9),    # 15.2542...
    ("downsample", 5.23, 70.0),              # 4.13 / 5.9
]


@pytest.mark.parametrize("kind,value,level", INTERIOR)
def test_interior_native_value_maps_to_the_hand_worked_level(kind, value, level):
    assert levels.normalize(kind, value) == pytest.approx(level, abs=1e-9)
    assert levels.denormalize(kind, level) == pytest.approx(value, abs=1e-9)
    # the vectorised path gives the same numbers element by element
    got = levels.normalize(kind, np.array([value, value]))
    np.testing.assert_allclose(got, [level, level], atol=1e-9)


def test_ranges_are_the_papers():
    """Section 4.1's ranges, and which end is the weakest (JPEG: the highest quality)."""
    got = {k: (d.low, d.high, d.integer) for k, d in levels.DEGRADATIONS.items()}
    assert got == {"blur": (0.1, 4.0, False), "noise": (1.0, 40.0, False),
                   "jpeg": (95.0, 30.0, True), "downsample": (1.1, 7.0, False)}
    assert levels.get("jpeg").vmin == 30.0 and levels.get("jpeg").vmax == 95.0


def test_values_a_hair_outside_the_range_are_refused_and_the_ends_accepted():
    d = levels.get("noise")
    # the tolerance is 1e-9 of the range (39): a float-rounding margin, not a wider range
    assert levels.normalize("noise", d.vmax + 1e-9) == 100.0
    assert levels.normalize("noise", d.vmin - 1e-9) == 0.0
    for bad in (d.vmax + 1e-6, d.vmin - 1e-6, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise: sigma_255="):
            levels.normalize("noise", bad)
    for bad in (-1e-6, 100 + 1e-6, float("nan")):
        with pytest.raises(ValueError, match="outside 0..100"):
            levels.denormalize("blur", bad)
    assert levels.denormalize("blur", 0.0) == 0.1 and levels.denormalize("blur", 100.0) == 4.0


def test_realizable_jpeg_rounds_the_quality_and_relabels():
    """Level 50 -> quality 62.5, rounded to 62 (Python rounds half to even) -> level
    100 * 33 / 65; level 10 -> quality 88.5 -> 88 -> 100 * 7 / 65."""
    assert levels.realizable("jpeg", 50.0) == (62.0, pytest.approx(100 * 33 / 65))
    assert levels.realizable("jpeg", 10.0) == (88.0, pytest.approx(100 * 7 / 65))
    value, level = levels.realizable("noise", 50.0)
    assert (value, level) == (pytest.approx(20.5), 50.0)
    assert isinstance(level, float) and isinstance(value, float)


# Survivors of `mutmut run "zephir.degrade.levels*"` (docs/mutation.md), each killed here.

def test_an_unknown_type_names_the_four_known_ones():
    with pytest.raises(ValueError, match=r"'fog'; expected one of blur, noise, jpeg, "
                                         r"downsample$"):
        levels.get("fog")


def test_single_precision_inputs_are_mapped_in_double_precision():
    """A float32 value (e.g. read from a tensor) gives the float64 level: in float32,
    100 (1 - 0.1) / 3.9 is 23.076923 (off by ~1e-6), and 0.1 + 3.9 * 0.25 is 1.0750000477."""
    assert levels.normalize("blur", np.float32(1.0)) == pytest.approx(100 * 0.9 / 3.9, abs=1e-12)
    assert levels.denormalize("blur", np.float32(25.0)) == pytest.approx(1.075, abs=1e-12)
    got = levels.normalize("blur", np.array([1.0, 1.0], dtype=np.float32))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [100 * 0.9 / 3.9] * 2, rtol=0, atol=1e-12)


def test_scalars_come_back_as_plain_python_floats():
    """Records are written as YAML/JSON: a numpy scalar would not pass yaml.safe_dump."""
    import yaml

    for value in (levels.normalize("noise", 20.5), levels.denormalize("blur", 50.0),
                  *levels.realizable("jpeg", 50.0), *levels.realizable("noise", 50.0)):
        assert type(value) is float
    yaml.safe_dump({"level": levels.denormalize("blur", 50.0)})


def test_the_range_tolerance_is_one_billionth_of_the_range_on_both_sides():
    """noise: range 39, tolerance 3.9e-8 exactly at each end (inclusive); 4e-8 beyond the top
    (between 39e-9 and the 41e-9 a sum of the ends would give) is refused."""
    eps = 1e-9 * 39.0
    assert levels.normalize("noise", 1.0 - eps) == 0.0
    assert levels.normalize("noise", 40.0 + eps) == 100.0
    for bad in (40.0 + 4.0e-8, 1.0 - 4.0e-8):
        with pytest.raises(ValueError, match="noise: sigma_255="):
            levels.normalize("noise", bad)


def test_an_out_of_range_level_names_its_type():
    with pytest.raises(ValueError, match=r"^blur: level 101"):
        levels.denormalize("blur", 101.0)
