"""Tests of :mod:`archlab.report.format`, the one number formatter of the report and the CLI."""

from __future__ import annotations

from archlab.report.format import (
    format_bytes,
    format_count,
    format_flops,
    format_int,
    format_ms,
    format_percent,
    format_seconds,
    format_shape,
)


def test_formatting():
    assert format_count(12_345) == "12.3k"
    assert format_count(1_234_567) == "1.2M"
    assert format_count(950) == "950"
    assert format_count(None) == "–"
    assert format_flops(1.2e6) == "1.2 MFLOPs"
    assert format_flops(3.4e9) == "3.4 GFLOPs"
    assert format_ms(0.45) == "0.45 ms"
    assert format_ms(12.345) == "12.3 ms"
    assert format_percent(0.9834) == "98.3 %"
    assert format_percent(float("nan")) == "–"
    assert format_seconds(42.34) == "42.3 s"
    assert format_seconds(192) == "3 min 12 s"
    assert format_seconds(3720) == "1 h 2 min"
    # The CLI's denser style comes from the same functions.
    assert format_percent(0.97123, digits=2, space="") == "97.12%"
    assert format_count(11_915_176, digits=2) == "11.92M"
    assert format_count(2.5e9, digits=2, giga="B") == "2.50B"
    assert format_ms(0.4512, unit=False) == "0.451"
    assert format_bytes(3 * 2**20) == "3.00 MiB"
    assert format_int(11_915_176) == "11,915,176"
    assert format_shape((3, 224, 224)) == "3×224×224" and format_shape(None) == "–"
    for formatter in (format_count, format_flops, format_ms, format_percent, format_seconds, format_bytes):
        assert formatter(None) == formatter("n/a") == formatter(float("inf")) == "–", formatter
