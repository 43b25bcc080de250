"""Workload parsing/validation and Plan's JSON round trip and validation."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autosparse.plan import SCHEMA_VERSION, Layout, Plan
from autosparse.workload import DEFAULT_MATVEC, Workload


def test_default_is_matvec_heavy():
    w = Workload()
    assert w.matvec == DEFAULT_MATVEC > 0 and w.rmatvec == 0 and dict(w.matmat) == {}


def test_parse_short_form():
    w = Workload.parse("matvec=1000,rmatvec=200,matmat16=10")
    assert (w.matvec, w.rmatvec, dict(w.matmat)) == (1000, 200, {16: 10})
    assert str(w) == "matvec=1000,rmatvec=200,matmat16=10"
    assert Workload.parse(str(w)) == w
    assert Workload.parse(" rmatvec = 5 ").matvec == 0
    assert dict(Workload.parse("matmat4=1,matmat4=2").matmat) == {4: 3}


@pytest.mark.parametrize("text,err,match", [
    ("matvec=-1", ValueError, "non-negative"),
    ("foo=3", ValueError, "unknown workload key 'foo'"),
    ("matmat=3", ValueError, "unknown workload key 'matmat'"),
    ("matvec3=1", ValueError, "unknown workload key 'matvec3'"),
    ("matvec", ValueError, "bad workload item"),
    ("matvec=1.5", ValueError, "bad workload item"),
    ("", ValueError, "empty workload"),
    ("matmat0=3", ValueError, "at least 1"),
])
def test_parse_errors(text, err, match):
    with pytest.raises(err, match=match):
        Workload.parse(text)


def test_constructor_errors():
    with pytest.raises(ValueError, match="non-negative"):
        Workload(matvec=-3)
    with pytest.raises(TypeError, match="integer"):
        Workload(rmatvec=2.5)
    with pytest.raises(TypeError, match="integer"):
        Workload(matvec=True)
    with pytest.raises(TypeError, match="mapping"):
        Workload(matmat=[16])
    with pytest.raises(ValueError, match="unknown workload key"):
        Workload.coerce({"matvec": 3, "solve": 1})
    with pytest.raises(TypeError, match="Workload, dict, string"):
        Workload.coerce(42)


def test_workload_class_groups_similar_counts():
    assert Workload(matvec=900).workload_class() == Workload(matvec=1100).workload_class()
    assert Workload(matvec=1000).workload_class() != Workload(matvec=10).workload_class()
    assert Workload(matvec=1000).workload_class() != Workload(matvec=1000, rmatvec=1000).workload_class()


@given(mv=st.integers(0, 10**6), rmv=st.integers(0, 10**6),
       mm=st.dictionaries(st.integers(1, 256), st.integers(0, 10**4), max_size=3))
def test_workload_round_trips(mv, rmv, mm):
    w = Workload(matvec=mv, rmatvec=rmv, matmat=mm)
    assert Workload.from_dict(json.loads(json.dumps(w.to_dict()))) == w
    if w.total_calls:
        assert Workload.parse(str(w)) == w
    assert w.vector_equivalents() == mv + rmv + sum(k * c for k, c in mm.items())


def test_plan_round_trip_and_accessors():
    p = Plan((Layout("bsr", {"r": 3, "c": 3, "index_dtype": "int32"}), Layout("csr", {"index_dtype": "int32"}, "AH")),
             {"matvec": 0, "rmatvec": 1, "matmat": 0})
    q = Plan.from_json(p.to_json())
    assert q == p
    assert q.format == "bsr" and q.params["r"] == 3 and q.index_dtype == "int32"
    assert q.serves["rmatmat"] == 1                        # follows rmatvec by default
    assert json.loads(p.to_json())["version"] == SCHEMA_VERSION
    assert "for rmatvec" in p.describe()
    assert Plan.baseline().is_baseline


@pytest.mark.parametrize("doc,match", [
    ({"version": 99, "layouts": [{"format": "csr"}], "serves": {}}, "schema version"),
    ({"version": SCHEMA_VERSION, "layouts": [{"format": "nope"}], "serves": {}}, "unknown format 'nope'"),
    ({"version": SCHEMA_VERSION, "layouts": [], "serves": {}}, "non-empty"),
    ({"version": SCHEMA_VERSION, "layouts": [{"format": "csr"}], "serves": {"matvec": 3}}, "layout 3"),
    ({"version": SCHEMA_VERSION, "layouts": [{"format": "csr"}], "serves": {"solve": 0}}, "unknown operation"),
    ({"version": SCHEMA_VERSION, "layouts": [{"format": "csr", "of": "B"}], "serves": {}}, "'A' or 'AH'"),
    ({"version": SCHEMA_VERSION, "layouts": [{"format": "csr", "params": {"x": [1]}}], "serves": {}}, "plain JSON"),
    ({"version": SCHEMA_VERSION, "layouts": [{"format": "csr"}, {"format": "csr", "of": "AH"}],
      "serves": {"matvec": 0, "rmatvec": 0}}, "every layout"),
    ([1, 2], "JSON object"),
])
def test_plan_validation(doc, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Plan.from_dict(doc)


def test_plan_from_bad_json():
    with pytest.raises(ValueError, match="not valid JSON"):
        Plan.from_json("{nope")
