"""β and γ schedules."""

import math

import pytest

from neurocvae.contrastive.schedules import Constant, Cyclical, OriginalCyclical, WarmUp


def fu_reference(t: int, total: int, cycles: int, ratio: float) -> float:
    """haofuml/cyclical_annealing's frange_cycle_linear, written out (t 0-based)."""
    period = total / cycles
    tau = (t % math.ceil(period)) / period
    return min(tau / ratio, 1.0)


@pytest.mark.parametrize(("total", "cycles", "ratio"), [(100, 4, 0.5), (97, 3, 0.25)])
def test_cyclical_follows_fu_et_al(total, cycles, ratio):
    schedule = Cyclical(value=2.0, cycles=cycles, ratio=ratio)
    values = [schedule(t, 10, total) for t in range(total)]
    assert values == pytest.approx([2 * fu_reference(t, total, cycles, ratio)
                                    for t in range(total)])
    assert values[0] == 0 and max(values) == 2.0
    assert sum(v == 0 for v in values) == cycles  # each cycle restarts at zero


def test_cyclical_per_epoch_holds_within_an_epoch():
    schedule = Cyclical(cycles=2, ratio=0.5, unit="epoch")
    values = [schedule(batch, 5, 40) for batch in range(40)]  # 8 epochs of 5 batches
    assert all(len(set(values[e * 5:(e + 1) * 5])) == 1 for e in range(8))
    assert values[::5] == pytest.approx([0, 0.5, 1, 1, 0, 0.5, 1, 1])


def test_the_original_m3_schedule():
    schedule = OriginalCyclical(value=1.0, cycle=20, flat=4)
    by_epoch = [schedule(epoch * 48, 48, 48 * 100) for epoch in range(50)]
    assert by_epoch[:4] == [1, 1, 1, 1]
    assert by_epoch[4] == 0 and by_epoch[9] == 0.5 and by_epoch[13] == 0.9
    assert by_epoch[14:24] == [1] * 10 and by_epoch[24] == 0


def test_warm_up_and_constant():
    warm = WarmUp(value=4.0, length=10)
    assert [warm(t, 1, 100) for t in (0, 5, 10, 50)] == [0, 2, 4, 4]
    assert Constant(value=0.01)(123, 10, 1000) == 0.01
    with pytest.raises(ValueError, match="unit"):
        Constant(unit="minute")
