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
