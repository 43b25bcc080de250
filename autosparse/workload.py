"""Workload: which products will be called on the matrix, and how often.

``Workload(matvec=1000, rmatvec=200, matmat={16: 10})`` expects 1000 calls of
``A @ x``, 200 of ``Aᴴ @ x`` and 10 of ``A @ X`` with X of 16 columns.  The
tuner minimises build time + sum(calls × time per call) over it.  The short
form ``"matvec=1000,rmatvec=200,matmat16=10"`` is what the command line takes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType

from ._checks import check_count

DEFAULT_MATVEC = 1000
_KEYS = "matvec, rmatvec, matmat<k> (e.g. matmat16)"


def _matmat_items(mm):
    """The (k, calls) pairs of a ``matmat`` mapping (None: none), or TypeError."""
    if mm is None:
        return ()
    if not hasattr(mm, "items"):
        raise TypeError(f"matmat must be a mapping {{k: calls}}, got {type(mm).__name__}")
    return mm.items()


@dataclass(frozen=True)
class Workload:
    matvec: int = DEFAULT_MATVEC
    rmatvec: int = 0
    matmat: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "matvec", check_count(self.matvec, "matvec calls"))
        object.__setattr__(self, "rmatvec", check_count(self.rmatvec, "rmatvec calls"))
        clean = {}
        for k, calls in _matmat_items(self.matmat):
            k = check_count(k, "matmat column count k")
            if k < 1:
                raise ValueError("matmat column count k must be at least 1")
            calls = check_count(calls, f"matmat{k} calls")
            if calls:
                clean[k] = clean.get(k, 0) + calls
        object.__setattr__(self, "matmat", MappingProxyType(dict(sorted(clean.items()))))
        # kept: tune() asks on every call, and a one-call tune() has microseconds to spend
        object.__setattr__(self, "_vector_equivalents",
                           self.matvec + self.rmatvec + sum(k * c for k, c in clean.items()))

    # -- constructors ------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> "Workload":
        """From ``"matvec=1000,rmatvec=200,matmat16=10"`` (missing keys are 0)."""
        if not isinstance(text, str):
            raise TypeError(f"workload string expected, got {type(text).__name__}")
        counts = {"matvec": 0, "rmatvec": 0, "matmat": {}}
        if not text.strip():
            raise ValueError(f"empty workload string; give e.g. 'matvec=1000,rmatvec=200' (keys: {_KEYS})")
        for part in text.split(","):
            part = part.strip()
            m = re.fullmatch(r"([a-z]+)(\d*)\s*=\s*(-?\d+)", part)
            if not m:
                raise ValueError(f"bad workload item {part!r}; expected key=count with keys {_KEYS}")
            key, kdigits, value = m.group(1), m.group(2), int(m.group(3))
            if key == "matmat" and kdigits:
                counts["matmat"][int(kdigits)] = counts["matmat"].get(int(kdigits), 0) + value
            elif key in ("matvec", "rmatvec") and not kdigits:
                counts[key] += value
            else:
                raise ValueError(f"unknown workload key {key + kdigits!r}; accepted: {_KEYS}")
        return cls(**counts)

    @classmethod
    def coerce(cls, workload) -> "Workload":
        """A Workload from None (the default), a Workload, a dict or a string."""
        if workload is None:
            return cls()
        if isinstance(workload, Workload):
            return workload
        if isinstance(workload, str):
            return cls.parse(workload)
        if isinstance(workload, dict):
            return cls.from_dict(workload)
        raise TypeError(f"workload must be a Workload, dict, string or None, got {type(workload).__name__}")

    @classmethod
    def from_dict(cls, d: dict) -> "Workload":
        unknown = set(d) - {"matvec", "rmatvec", "matmat"}
        if unknown:
            raise ValueError(f"unknown workload key(s) {sorted(unknown)}; accepted: matvec, rmatvec, matmat")
        matmat = {}
        for k, v in _matmat_items(d.get("matmat")):
            if isinstance(k, str):            # JSON keys: "16"
                if not re.fullmatch(r"\s*\d+\s*", k):
                    raise ValueError(f"matmat column count k must be a positive integer, got {k!r}")
                k = int(k)
            if k in matmat:
                raise ValueError(f"matmat column count {k} is given twice")
            matmat[k] = v                     # Workload checks types and ranges
        return cls(matvec=d.get("matvec", 0), rmatvec=d.get("rmatvec", 0), matmat=matmat)

    # -- views ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"matvec": self.matvec, "rmatvec": self.rmatvec, "matmat": {str(k): v for k, v in self.matmat.items()}}

    def items(self):
        """(operation, k, calls) for every operation with calls; k = 1 for vector products."""
        out = []
        if self.matvec:
            out.append(("matvec", 1, self.matvec))
        if self.rmatvec:
            out.append(("rmatvec", 1, self.rmatvec))
        out.extend(("matmat", k, c) for k, c in self.matmat.items())
        return out

    @property
    def total_calls(self) -> int:
        return self.matvec + self.rmatvec + sum(self.matmat.values())

    def vector_equivalents(self) -> float:
        """Calls weighted by columns: the workload in units of one matvec's flops."""
        return self._vector_equivalents

    def workload_class(self) -> str:
        """A coarse label for plan-store keys: operations present and their call
        counts rounded to powers of ten, so 900 and 1100 matvecs share plans."""
        def mag(c):
            return f"1e{round(math.log10(c))}"
        parts = [f"{op}{k if op == 'matmat' else ''}:{mag(c)}" for op, k, c in self.items()]
        return ",".join(parts) or "none"

    def __str__(self):
        try:
            return self._text                     # memoised: every tune() reports it
        except AttributeError:
            parts = []
            if self.matvec:
                parts.append(f"matvec={self.matvec}")
            if self.rmatvec:
                parts.append(f"rmatvec={self.rmatvec}")
            parts.extend(f"matmat{k}={c}" for k, c in self.matmat.items())
            text = ",".join(parts) or "matvec=0"
            object.__setattr__(self, "_text", text)
        return text

    def __hash__(self):
        return hash((self.matvec, self.rmatvec, tuple(self.matmat.items())))

    def __eq__(self, other):
        return (isinstance(other, Workload) and (self.matvec, self.rmatvec, dict(self.matmat))
                == (other.matvec, other.rmatvec, dict(other.matmat)))
