"""Sizes and ages as people write and read them. Pure: text in, numbers out, and back.

Sizes are bytes: a whole number, or a number with a unit, `KB`, `MB`, `GB`, `TB` (powers of
1000, as disks and `du --si` count) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024). Unit
letters are case-insensitive (`50gb` and `50Gb` are `50GB`: nobody caps a cache in bits), `B`
means bytes, a space may separate number and unit, and a fraction is allowed with a unit
(`1.5GB`) and rounded down to whole bytes. `50G` is refused: tools disagree whether `G` is
1000³ or 1024³.

Ages are a number with `s`, `m`, `h`, `d` or `w` (or `second`, `minute`, `hour`, `day`,
`week`, singular or plural), lowercase only: `M` often means months. A bare number is refused,
since `30` could mean seconds or days; only `0` needs no unit.

Example:
    >>> parse_size("50GB"), parse_size("1.5 KiB"), parse_size("1000")
    (50000000000, 1536, 1000)
    >>> parse_age("30d"), parse_age("1.5h"), parse_age("2 weeks")
    (2592000.0, 5400.0, 1209600.0)
    >>> format_size(3_210_000_000), format_age(41 * 86400 + 5000), format_age(5400, short=True)
    ('3.2 GB', '41 days', '1.5h')
"""

from __future__ import annotations

import re
from fractions import Fraction

from .errors import UsageError

SIZE_UNITS: dict[str, int] = {
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip
AGE_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WORDS = {"second": "s", "minute": "m", "hour": "h", "day": "d", "week": "w"}
_SIZE_FACTORS = {"": 1, "b": 1, **{u.lower(): f for u, f in SIZE_UNITS.items()}}
_AGE_FACTORS = {
    **AGE_UNITS,
    **{w: AGE_UNITS[u] for w, u in _WORDS.items()},
    **{w + "s": AGE_UNITS[u] for w, u in _WORDS.items()},
}
_QUANTITY = re.compile(r"\s*([-+]?)([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([A-Za-z]*)\s*")
_SIZE_HELP = "a whole number of bytes, or a number with " + ", ".join(SIZE_UNITS)
_SIZE_HELP += " (e.g. 50GB, 500MiB)"
_AGE_HELP = "a number with " + ", ".join(AGE_UNITS) + " (e.g. 30d, 12h, 2w)"


class InvalidQuantityError(UsageError):
    """A size or age that cannot be parsed; the message quotes it and lists the valid units."""

    def __init__(self, kind: str, value: object, reason: str, expected: str) -> None:
        super().__init__(f"invalid {kind} {value!r}: {reason}; expected {expected}")
        self.kind = kind
        self.value = value
        self.reason = reason


def _split(kind: str, value: object, expected: str) -> tuple[Fraction, str]:
    """Number and unit of `value`; refuses non-text, empty, malformed and negative values."""
    if not isinstance(value, str):
        raise InvalidQuantityError(kind, value, "not text", expected)
    if not value.strip():
        raise InvalidQuantityError(kind, value, "it is empty", expected)
    m = _QUANTITY.fullmatch(value)
    if not m:
        raise InvalidQuantityError(kind, value, "not a number followed by a unit", expected)
    sign, number, unit = m.groups()
    if sign == "-":
        raise InvalidQuantityError(kind, value, "it is negative", expected)
    return Fraction(number), unit


def parse_size(value: str | int) -> int:
    """Bytes from `"50GB"`, `"500MiB"`, `"1.5 gb"` or `"1000"`; an int passes through.

    Raises:
        InvalidQuantityError: (a :class:`UsageError`) empty, negative, malformed, a fraction
            of a byte, or an unknown unit.

    Example:
        >>> parse_size("500MiB"), parse_size("2tb"), parse_size(7)
        (524288000, 2000000000000, 7)
        >>> parse_size("50G")
        Traceback (most recent call last):
        cas.units.InvalidQuantityError: invalid size '50G': unknown unit 'G'; expected a whole number of bytes, or a number with KB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. 50GB, 500MiB)
    """  # noqa: E501
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidQuantityError("size", value, "it is negative", _SIZE_HELP)
        return value
    number, unit = _split("size", value, _SIZE_HELP)
    factor = _SIZE_FACTORS.get(unit.lower())
    if factor is None:
        raise InvalidQuantityError("size", value, f"unknown unit {unit!r}", _SIZE_HELP)
    if factor == 1 and number.denominator != 1:
        raise InvalidQuantityError("size", value, "a fraction of a byte", _SIZE_HELP)
    return int(number * factor)  # exact arithmetic; rounds down to whole bytes


def parse_age(value: str | float) -> float:
    """Seconds from `"30d"`, `"12h"`, `"1.5h"` or `"2 weeks"`; `0` and `"0"` need no unit.

    Raises:
        InvalidQuantityError: (a :class:`UsageError`) empty, negative, malformed, a bare
            number other than zero, or an unknown unit.

    Example:
        >>> parse_age("12h"), parse_age("0")
        (43200.0, 0.0)
        >>> parse_age("30")
        Traceback (most recent call last):
        cas.units.InvalidQuantityError: invalid age '30': a bare number needs a unit; expected a number with s, m, h, d, w (e.g. 30d, 12h, 2w)
    """  # noqa: E501
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    number, unit = _split("age", value, _AGE_HELP)
    if not unit:
        if number == 0:
            return 0.0
        raise InvalidQuantityError("age", value, "a bare number needs a unit", _AGE_HELP)
    factor = _AGE_FACTORS.get(unit)
    if factor is None:
        raise InvalidQuantityError("age", value, f"unknown unit {unit!r}", _AGE_HELP)
    try:
        return float(number * factor)
    except OverflowError:
        raise InvalidQuantityError("age", value, "too large", _AGE_HELP) from None


def _number(x: float) -> str:
    """Two significant figures below 10, whole numbers above: `3.2`, `41`, `1000`."""
    text = f"{x:.1f}" if x < 10 else f"{x:.0f}"
    return text[:-2] if text.endswith(".0") else text


def format_size(n: int) -> str:
    """A byte count for people, in powers of 1000 (parseable by :func:`parse_size`).

    Example:
        >>> format_size(512), format_size(50 * 10**9), format_size(999_960_000)
        ('512 B', '50 GB', '1 GB')
    """
    sign, n = ("-", -n) if n < 0 else ("", n)
    for unit in ("TB", "GB", "MB", "KB"):
        text = _number(n / SIZE_UNITS[unit])
        if float(text) >= 1 and n >= 1000:
            return f"{sign}{text} {unit}"
    return f"{sign}{n} B"  # exact below 1 KB


def format_age(seconds: float, *, short: bool = False) -> str:
    """A duration for people: `41 days`, `1.5 hours`; `short` gives `30d`, `1.5h`.

    Both forms parse back with :func:`parse_age`; the long one is rounded for reading, the
    short one to 4 decimals of its unit.

    Example:
        >>> format_age(90), format_age(86400), format_age(30 * 86400, short=True)
        ('1.5 minutes', '1 day', '30d')
    """
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    if short:
        unit = next((u for u in "dhm" if seconds >= AGE_UNITS[u]), "s")
        text = f"{seconds / AGE_UNITS[unit]:.4f}".rstrip("0").rstrip(".")
        return f"{sign}{text}{unit}"
    for word in ("day", "hour", "minute", "second"):
        text = _number(seconds / AGE_UNITS[_WORDS[word]])
        if float(text) >= 1 or word == "second":
            break
    return f"{sign}{text} {word}{'' if text == '1' else 's'}"
