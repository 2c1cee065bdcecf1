"""Quantity parsing and canonical formatting against apimachinery's documented behaviour."""

from decimal import Decimal

import pytest
from kybern.quantity import (
    FORMAT_ERROR,
    SUFFIX_ERROR,
    cpu_millis,
    format_quantity,
    memory_bytes,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("1Gi", Decimal(2**30)),
        ("500Mi", Decimal(500 * 2**20)),
        ("2", Decimal(2)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("1.5k", Decimal(1500)),
        ("+5", Decimal(5)),
        ("-2M", Decimal(-2_000_000)),
        (".5", Decimal("0.5")),
        ("0.1n", Decimal("1e-9")),
        (3, Decimal(3)),
        (0.25, Decimal("0.25")),
    ],
)
def test_parse(text: str | int | float, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", FORMAT_ERROR),
        ("abc", FORMAT_ERROR),
        ("1.2.3", FORMAT_ERROR),
        ("1K", SUFFIX_ERROR),
        ("1Mb", FORMAT_ERROR),
        ("5ki", SUFFIX_ERROR),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_quantity(text)
    assert str(err.value) == message


def test_kube_wording() -> None:
    assert FORMAT_ERROR == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("100m", "100m"),
        ("1000m", "1"),
        ("0.5", "500m"),
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("500Mi", "500Mi"),
        ("1000Mi", "1000Mi"),
        ("2", "2"),
        ("2000", "2k"),
        ("1500", "1500"),
        ("1e3", "1e3"),
        ("1.5e3", "1500"),
        ("512", "512"),
        ("0.5Ki", "512"),
        ("0", "0"),
        ("0Gi", "0"),
        ("-1k", "-1k"),
        ("1n", "1n"),
        ("100u", "100u"),
        (1, "1"),
        (0.5, "500m"),
    ],
)
def test_format(text: str | int | float, canonical: str) -> None:
    assert format_quantity(text) == canonical


def test_format_explicit() -> None:
    assert format_quantity(Decimal(2**30), "BinarySI") == "1Gi"
    assert format_quantity(Decimal("0.25"), "DecimalSI") == "250m"


def test_units() -> None:
    assert cpu_millis("1") == 1000
    assert cpu_millis("250m") == 250
    assert cpu_millis("1n") == 1  # rounded up like MilliValue()
    assert cpu_millis(0.5) == 500
    assert memory_bytes("1Gi") == 1073741824
    assert memory_bytes("1.5") == 2
    assert memory_bytes("128974848") == 128974848
    assert memory_bytes("129e6") == 129000000
    assert memory_bytes("123Mi") == 128974848
