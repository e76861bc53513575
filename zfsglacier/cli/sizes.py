"""Human sizes on the command line: 512M, 2G, 1.5T (powers of 1024)."""

import argparse
import re

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G, 1.5T)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_age(text):
    """30d, 12w, 1y, 6h -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdwy])\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (e.g. 30d, 12w, 1y)")
    return int(m.group(1)) * _AGES[m.group(2).lower()]
