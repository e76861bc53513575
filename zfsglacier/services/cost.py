"""Bytes, objects, requests, storage class and days, turned into dollars.

One place for every estimate that --dry-run, zg-ls, zg-rm and zg-prune print.  Prices come from
a dated, editable table (zfsglacier/data/prices.toml, or the file the commands name with
``use_prices``: $ZG_PRICES), so an estimate always says how old its prices are.
"""

import math
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError

GB = 1024 ** 3
DAY = 86400
MONTH_DAYS = 30  # AWS bills storage per GB-month of 720 hours
DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "data" / "prices.toml"


@lru_cache(maxsize=4)
def _load(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"price table {path}: {err}") from None


_table = [DEFAULT_PRICES]


def use_prices(path):
    """Read prices from ``path`` from now on (None: the table shipped with zfsglacier)."""
    _table[0] = Path(path) if path else DEFAULT_PRICES


def prices(path=None):
    return _load(str(path or _table[0]))


def _cls(name, table=None):
    table = table or prices()
    try:
        return table["classes"][name]
    except KeyError:
        raise UsageError(f"no prices for storage class {name} in the price table") from None


def monthly_storage(size, cls, objects=1):
    """Dollars per month to keep ``objects`` archives totalling ``size`` bytes."""
    c = _cls(cls)
    std = _cls("STANDARD")["storage_per_gb_month"]
    over_std = c.get("overhead_standard_kb", 0) * 1024 * objects
    cold = size + (c.get("overhead_kb", 0) * 1024) * objects - over_std
    cold = max(cold, c.get("min_object_kb", 0) * 1024 * objects)
    return cold / GB * c["storage_per_gb_month"] + over_std / GB * std


def put_cost(requests, cls):
    """Dollars for ``requests`` PUT/POST requests (a multipart upload makes one per part)."""
    return requests / 1000 * _cls(cls).get("put_per_1000", 0)


def by_class(items, class_of):
    """{price class: (bytes, count)} of archives (anything with ``size``; ``class_of(item)`` its
    class): each archive is priced as the class it is stored in, not the destination's."""
    out: dict = {}
    for item in items:
        cls = class_of(item)
        size, n = out.get(cls, (0, 0))
        out[cls] = (size + item.size, n + 1)
    return out


def monthly_by_class(groups):
    """Dollars per month of ``by_class`` groups."""
    return sum(monthly_storage(size, cls, n) for cls, (size, n) in groups.items())


def class_names(groups):
    """"DEEP_ARCHIVE", or "DEEP_ARCHIVE 3, STANDARD 1" for a mix."""
    if len(groups) == 1:
        return next(iter(groups))
    return ", ".join(f"{cls} {n}" for cls, (_, n) in sorted(groups.items()))


@dataclass
class Retrieval:
    tier: str
    dollars: float
    hours: float


def retrieval_options(size, cls, objects=1, requests=None):
    """Every tier's price and typical wait to bring ``size`` bytes in ``objects`` archives back."""
    c = _cls(cls)
    reqs = objects if requests is None else requests
    tiers = c.get("tiers")
    if not tiers:
        return [Retrieval("immediate", size / GB * c.get("retrieval_per_gb", 0) +
                          reqs / 1000 * c.get("get_per_1000", 0), 0.0)]
    return [Retrieval(name, size / GB * t["per_gb"] + reqs / 1000 * t["per_1000"] +
                      reqs / 1000 * c.get("get_per_1000", 0), t["hours"])
            for name, t in tiers.items()]


def thaw_hours(cls, tier):
    """The typical hours a thaw of ``cls`` at ``tier`` takes (the price table's), or None."""
    try:
        return _cls(cls).get("tiers", {})[tier]["hours"]
    except (KeyError, UsageError):
        return None


def early_deletion(size, cls, age_seconds):
    """(days short of the minimum, dollars still billed) for deleting an archive now."""
    c = _cls(cls)
    if not c.get("min_days", 0):
        return 0.0, 0.0
    days_left = max(0.0, c["min_days"] - max(0.0, age_seconds) / DAY)
    if days_left <= 0:
        return 0.0, 0.0
    return days_left, monthly_storage(size, cls) * days_left / MONTH_DAYS


def min_days(cls):
    return _cls(cls).get("min_days", 0)


def dollars(x):
    if x == 0:
        return "$0"
    if x < 0.01:
        return f"${x:.4f}"
    return f"${x:,.2f}"


def human_bytes(n):
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n, 1024)), 5)
    return f"{n / 1024 ** exp:.1f} {'BKMGTP'[exp]}iB".replace("BiB", "B")


def as_of():
    p = prices()
    return f"prices as of {p.get('as_of', '?')} ({p.get('region', '?')})"
