"""Numbers with their units, as the tables print them."""

from __future__ import annotations

from nbdeploy.bench.units import bytes_text, ms_text, number_text, plus_minus


def test_sizes_read_as_people_say_them() -> None:
    assert [bytes_text(n) for n in (512, 4096, 221_000, 999_999, 226_704_935, 3.2e9)] == [
        "512 B", "4.1 kB", "221 kB", "1 MB", "227 MB", "3.2 GB",
    ]  # fmt: skip


def test_latencies_carry_their_interval_at_the_medians_precision() -> None:
    assert plus_minus(1.9034, 1.85, 1.97) == "1.90 ms ±0.07"
    assert plus_minus(31.4, 30.0, 31.9) == "31.4 ms ±1.4"
    assert plus_minus(0.0213, 0.02128, 0.02135) == "0.0213 ms ±0.0001"
    assert plus_minus(0.0213, 0.02129, 0.02131) == "0.0213 ms ±0.00001"
    assert plus_minus(2.0, 2.0, 2.0) == "2.00 ms ±0.00"
    assert plus_minus(250.0, None, None) == ms_text(250.0) == "250 ms"
    assert ms_text(1234.5) == "1234 ms" and ms_text(0.02) == "0.02 ms"


def test_plain_numbers_never_in_exponent_form_unless_tiny() -> None:
    assert number_text(13390.4) == "13,390" and number_text(30000.0) == "30,000"
    assert number_text(0.8637) == "0.8637" and number_text(3e-7) == "3e-07"
