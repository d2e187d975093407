"""traces.units: the one bytes/s <-> Mbit/s conversion."""

import math

import pytest

from traces.units import bytes_per_s_to_mbps, mbps_to_bytes_per_s, rate_mbps, transfer_ms


def test_rate_of_a_transfer_in_mbit_per_s():
    assert rate_mbps(1_250_000, 1.0) == pytest.approx(10.0)  # 10 Mbit in one second
    assert rate_mbps(125_000, 0.01) == pytest.approx(100.0)
    assert rate_mbps(0, 0.5) == 0.0


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_zero_or_negative_duration_is_no_measurement(seconds):
    assert math.isnan(rate_mbps(1000, seconds))


def test_conversions_invert_each_other_and_match_transfer_time():
    assert bytes_per_s_to_mbps(mbps_to_bytes_per_s(37.5)) == pytest.approx(37.5)
    nbytes, mbps = 300_000, 24.0
    assert rate_mbps(nbytes, transfer_ms(nbytes, mbps) * 1e-3) == pytest.approx(mbps)
    assert transfer_ms(1, 0.0) == math.inf and transfer_ms(0, 0.0) == 0.0
