"""Plan: the decision the tuner made, as plain, versioned data.

A plan is a list of layouts and a routing table.  Each layout is a storage
format with its parameters, built either from A (``of="A"``) or from its
conjugate transpose (``of="AH"``: the copy that turns Aᴴx into a gather).
``serves`` names the layout each operation runs on.  An operation served by
a layout of the other side uses that layout's adjoint product, e.g. rmatvec
on an ``AH`` layout is that layout's matvec.

The special format ``"scipy"`` is the untouched input, multiplied by SciPy:
the baseline every search measures and the plan of a workload too small to
be worth converting.

Plans hold no arrays and no pickles: ``to_json``/``from_json`` round-trip
them, and ``from_json`` validates everything it reads (schema version,
known formats and operations, parameter types), because stores and wisdom
files are shared and may not be trusted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from dataclasses import dataclass, field

SCHEMA_VERSION = 1
OPERATIONS = ("matvec", "rmatvec", "matmat", "rmatmat")
BASELINE = "scipy"


@dataclass(frozen=True)
class Layout:
    format: str
    params: dict = field(default_factory=dict)
    of: str = "A"                      # "A" or "AH"

    def __post_init__(self):
        if self.of not in ("A", "AH"):
            raise ValueError(f"layout 'of' must be 'A' or 'AH', got {self.of!r}")
        if not isinstance(self.format, str):
            raise TypeError(f"layout format must be a string, got {type(self.format).__name__}")
        if not isinstance(self.params, Mapping):
            raise TypeError(f"layout params must be a dict, got {type(self.params).__name__}")
        for k, v in self.params.items():
            if not isinstance(k, str) or not (v is None or isinstance(v, (str, int, float, bool))):
                raise TypeError(f"layout parameter {k!r}={v!r} is not plain JSON data")
        # read-only views: layouts and plans are shared (Plan.baseline) and used as keys
        object.__setattr__(self, "params", MappingProxyType(dict(sorted(self.params.items()))))

    @property
    def key(self) -> str:
        p = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.format}({p})" + ("ᴴ" if self.of == "AH" else "")

    def to_dict(self) -> dict:
        return {"format": self.format, "params": dict(self.params), "of": self.of}

    def __hash__(self):
        return hash((self.format, tuple(self.params.items()), self.of))

    def __reduce__(self):                          # mapping proxies do not pickle
        return (Layout, (self.format, dict(self.params), self.of))


_BASELINE_PLAN = None


@dataclass(frozen=True)
class Plan:
    layouts: tuple
    serves: dict                       # operation -> index into layouts
    version: int = SCHEMA_VERSION

    def __post_init__(self):
        layouts = tuple(self.layouts)
        if not layouts:
            raise ValueError("a plan needs at least one layout")
        if not all(isinstance(lay, Layout) for lay in layouts):
            raise TypeError("plan layouts must be Layout objects")
        serves = dict(self.serves)
        for op in OPERATIONS:
            serves.setdefault(op, serves.get("matvec" if op == "matmat" else "rmatvec", 0))
        for op, i in serves.items():
            if op not in OPERATIONS:
                raise ValueError(f"unknown operation {op!r} in plan; accepted: {', '.join(OPERATIONS)}")
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(layouts):
                raise ValueError(f"plan routes {op} to layout {i!r}, but it has {len(layouts)} layout(s)")
        used = set(serves.values())
        if used != set(range(len(layouts))):
            raise ValueError("every layout of a plan must serve some operation")
        object.__setattr__(self, "layouts", layouts)
        object.__setattr__(self, "serves", MappingProxyType({op: serves[op] for op in OPERATIONS}))

    def __reduce__(self):
        return (Plan, (self.layouts, dict(self.serves), self.version))

    # -- convenience ---------------------------------------------------------
    @classmethod
    def single(cls, format: str, **params) -> "Plan":
        return cls((Layout(format, params),), {op: 0 for op in OPERATIONS})

    @classmethod
    def baseline(cls) -> "Plan":
        """The untouched SciPy matrix for every operation (one shared, immutable instance)."""
        global _BASELINE_PLAN
        if _BASELINE_PLAN is None:
            _BASELINE_PLAN = cls.single(BASELINE)
        return _BASELINE_PLAN

    @property
    def primary(self) -> Layout:
        return self.layouts[self.serves["matvec"]]

    @property
    def format(self) -> str:
        return self.primary.format

    @property
    def params(self) -> dict:
        return dict(self.primary.params)

    @property
    def index_dtype(self):
        return self.primary.params.get("index_dtype")

    @property
    def is_baseline(self) -> bool:
        return all(lay.format == BASELINE for lay in self.layouts)

    def describe(self) -> str:
        if len(self.layouts) == 1:
            return self.layouts[0].key
        parts = []
        for i, lay in enumerate(self.layouts):
            ops = [op for op, j in self.serves.items() if j == i]
            parts.append(f"{lay.key} for {'/'.join(ops)}")
        return "; ".join(parts)

    # -- JSON ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"version": self.version, "layouts": [lay.to_dict() for lay in self.layouts],
                "serves": dict(self.serves)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d) -> "Plan":
        if not isinstance(d, dict):
            raise ValueError(f"a plan must be a JSON object, got {type(d).__name__}")
        version = d.get("version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"plan schema version {version!r} is not supported (this autosparse reads {SCHEMA_VERSION})")
        raw_layouts = d.get("layouts")
        if not isinstance(raw_layouts, list) or not raw_layouts:
            raise ValueError("a plan needs a non-empty 'layouts' list")
        from . import formats
        known = set(formats.names()) | {BASELINE}
        layouts = []
        for lay in raw_layouts:
            if not isinstance(lay, dict) or set(lay) - {"format", "params", "of"}:
                raise ValueError(f"malformed layout {lay!r}")
            if lay.get("format") not in known:
                raise ValueError(f"unknown format {lay.get('format')!r}; accepted: {', '.join(sorted(known))}")
            layouts.append(Layout(lay["format"], dict(lay.get("params") or {}), lay.get("of", "A")))
        serves = d.get("serves")
        if not isinstance(serves, Mapping):
            raise ValueError("a plan needs a 'serves' mapping")
        return cls(tuple(layouts), serves, version)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"plan is not valid JSON: {exc}") from None
        return cls.from_dict(d)
