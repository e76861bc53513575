"""Human sizes on the command line: 512M, 2G, 1.5T (powers of 1024)."""

import argparse
import re

from ..errors import UsageError
from ..plumbing import parts


def parse_size(text):
    try:
        return parts.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_dollars(text):
    """$5, 5, 0.50 -> dollars (a float)."""
    m = re.fullmatch(r"\s*\$?\s*(\d+(?:\.\d*)?|\.\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not an amount of dollars: {text!r} (e.g. 5, $2.50)")
    return float(m.group(1))


_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def age_setting(value, where):
    """An age written in config.toml (``where`` names the key for the message), or None."""
    if value is None:
        return None
    try:
        return parse_age(value)
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"{where}: {err}") from None


def parse_age(text):
    """30d, 12w, 1y, 6h -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdwy])\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (e.g. 30d, 12w, 1y)")
    return int(m.group(1)) * _AGES[m.group(2).lower()]
