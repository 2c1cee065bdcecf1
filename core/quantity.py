"""Kubernetes resource quantities ("100m", "1Gi", "2e3"): parsing, arithmetic units, canonical text.

kube-apiserver re-serialises every Quantity in canonical form (``1000m`` is stored as ``1``,
``1024Mi`` as ``1Gi``), and kubectl, the scheduler and the kubelet all read the same numbers,
so parsing and formatting follow apimachinery's ``resource.Quantity`` rules: exact decimal
arithmetic, values finer than 1n rounded up, and the format (binary, decimal SI, decimal
exponent) remembered from the suffix the value was written with.
"""

from __future__ import annotations

import functools
import re
from decimal import ROUND_CEILING, ROUND_UP, Decimal, localcontext
from enum import StrEnum

FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
SUFFIX_ERROR = "unable to parse quantity's suffix"

_QUANTITY_RE = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
_NUMBER_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)")


class QuantityFormat(StrEnum):
    """How a quantity is written back (apimachinery's resource.Format)."""

    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


_DECIMAL_SUFFIXES: dict[str, int] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES: dict[str, int] = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {exp: suffix for suffix, exp in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_POWER = sorted(((power, suffix) for suffix, power in _BINARY_SUFFIXES.items()), reverse=True)
_NANO = Decimal("1e-9")


def parse_quantity_with_format(v: str | int | float | Decimal) -> tuple[Decimal, QuantityFormat]:
    """The exact value and the format its suffix implies; ValueError with kube's message."""
    if isinstance(v, bool):
        raise ValueError(FORMAT_ERROR)
    if isinstance(v, Decimal):
        return _round_nano(v), QuantityFormat.DECIMAL_SI
    if isinstance(v, int):
        return Decimal(v), QuantityFormat.DECIMAL_SI
    if isinstance(v, str):
        return _parse_text(v)
    return _parse_text(repr(v)) if isinstance(v, float) else _parse_text("")


@functools.lru_cache(maxsize=4096)
def _parse_text(v: str) -> tuple[Decimal, QuantityFormat]:
    """Memoized on the text: a cluster writes the same few quantities ("100m", "128Mi", a
    node's capacity) over and over, and parsing one costs several Decimal operations (~4-5% of
    the API server's CPU in the scheduler benchmark). Decimal results are immutable; failures
    are not cached (they raise)."""
    text = v.strip()
    if not text:
        raise ValueError(FORMAT_ERROR)
    match = _QUANTITY_RE.fullmatch(text)
    if match is None or _NUMBER_RE.fullmatch(match.group(1)) is None:
        raise ValueError(FORMAT_ERROR)
    number, suffix = match.groups()
    with localcontext() as ctx:
        ctx.prec = 80
        base = Decimal(number)
        if suffix in _DECIMAL_SUFFIXES:
            value, fmt = base.scaleb(_DECIMAL_SUFFIXES[suffix]), QuantityFormat.DECIMAL_SI
        elif suffix in _BINARY_SUFFIXES:
            value, fmt = base * (Decimal(2) ** _BINARY_SUFFIXES[suffix]), QuantityFormat.BINARY_SI
        elif re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
            value, fmt = base.scaleb(int(suffix[1:])), QuantityFormat.DECIMAL_EXPONENT
        else:
            raise ValueError(SUFFIX_ERROR)
        return _round_nano(value), fmt


def parse_quantity(v: str | int | float | Decimal) -> Decimal:
    """The exact value of a quantity; ValueError carries kube's message."""
    return parse_quantity_with_format(v)[0]


def _round_nano(value: Decimal) -> Decimal:
    # apimachinery keeps nano precision and rounds anything finer away from zero
    with localcontext() as ctx:
        ctx.prec = 80
        if value == value.quantize(_NANO, rounding=ROUND_UP):
            return value
        return value.quantize(_NANO, rounding=ROUND_UP)


def _ceil(value: Decimal) -> int:
    with localcontext() as ctx:
        ctx.prec = 80
        return int(value.to_integral_value(rounding=ROUND_CEILING))


def cpu_millis(v: str | int | float | Decimal) -> int:
    """CPU in millicores, rounded up as Quantity.MilliValue() does ("1n" costs 1m)."""
    if isinstance(v, str):
        return _cpu_millis_text(v)
    return _cpu_millis(v)


@functools.lru_cache(maxsize=4096)
def _cpu_millis_text(v: str) -> int:
    return _cpu_millis(v)


def _cpu_millis(v: str | int | float | Decimal) -> int:
    with localcontext() as ctx:
        ctx.prec = 80
        return _ceil(parse_quantity(v) * 1000)


def memory_bytes(v: str | int | float | Decimal) -> int:
    """A byte count (memory, storage), rounded up as Quantity.Value() does."""
    if isinstance(v, str):
        return _memory_bytes_text(v)
    return _ceil(parse_quantity(v))


@functools.lru_cache(maxsize=4096)
def _memory_bytes_text(v: str) -> int:
    return _ceil(parse_quantity(v))


def _decimal_parts(value: Decimal) -> tuple[int, int]:
    """(mantissa, exponent) with an integer mantissa and an exponent that is a multiple of 3,
    choosing the largest exponent (so 2000 -> (2, 3), 1500 -> (1500, 0), 0.5 -> (500, -3))."""
    sign, digits, exp = value.normalize().as_tuple()
    assert isinstance(exp, int)
    mantissa = int("".join(map(str, digits)) or "0")
    if mantissa == 0:
        return 0, 0
    # make the exponent a multiple of 3 by moving digits into the mantissa
    shift = exp % 3
    mantissa *= 10**shift
    exp -= shift
    if exp > 18:
        mantissa *= 10 ** (exp - 18)
        exp = 18
    return (-mantissa if sign else mantissa), exp


def format_quantity(v: str | int | float | Decimal, fmt: QuantityFormat | str | None = None) -> str:
    """Canonical text of a quantity, as kube-apiserver serialises it.

    With a string and no ``fmt``, the format follows the suffix it was written with
    ("1024Mi" -> "1Gi", "1000m" -> "1", "0.5" -> "500m", "1e3" -> "1e3").
    """
    if isinstance(v, str) and fmt is None:
        return _format_text(v)
    return _format(v, fmt)


@functools.lru_cache(maxsize=4096)
def _format_text(v: str) -> str:
    return _format(v, None)


def _format(v: str | int | float | Decimal, fmt: QuantityFormat | str | None) -> str:
    value, parsed_fmt = parse_quantity_with_format(v)
    fmt = QuantityFormat(fmt) if fmt is not None else parsed_fmt
    if value == 0:
        return "0"
    if fmt is QuantityFormat.BINARY_SI:
        integral = value == value.to_integral_value()
        if integral and abs(value) >= 1024:
            n = int(value)
            for power, suffix in _BINARY_BY_POWER:
                if n % (1 << power) == 0:
                    return f"{n >> power}{suffix}"
            return str(n)
        fmt = QuantityFormat.DECIMAL_SI
    mantissa, exp = _decimal_parts(value)
    if fmt is QuantityFormat.DECIMAL_EXPONENT:
        return f"{mantissa}e{exp}" if exp else str(mantissa)
    return f"{mantissa}{_DECIMAL_BY_EXPONENT[exp]}"


def canonical_quantity(v: str | int | float | Decimal) -> str:
    """Alias of :func:`format_quantity` with the written format kept (what defaulting stores)."""
    return format_quantity(v)
