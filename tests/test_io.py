"""``autosparse.io.read_matrix`` checked on its own: every corpus test feeds its
output to both the library and the SciPy reference, so a reading error there
would go unnoticed.  Shapes and nnz come from MANIFEST.tsv (whose nnz counts the
expanded matrix: symmetric files store one triangle), values from SciPy's own
reader of the gzip file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from autosparse.io import read_matrix

from conftest import NO_CORPUS, corpus_entries, corpus_params


def _header(path):
    with gzip.open(path, "rt") as fh:
        banner = fh.readline().split()
        line = fh.readline()
        while line.startswith("%"):
            line = fh.readline()
    rows, cols, stored = (int(v) for v in line.split())
    return banner[3].lower(), banner[4].lower(), stored


def _scipy_csr(path):
    with gzip.open(path, "rb") as fh:
        M = scipy.io.mmread(fh)
    return sp.csr_array(M)


def _entry(name):
    for e in corpus_entries():
        if e["name"] == name:
            return e
    pytest.skip(f"{name} not in the matrix corpus ({NO_CORPUS})")


def _canonical(A):
    assert isinstance(A, sp.csr_array)
    assert A.has_canonical_format
    assert np.all(np.diff(A.indptr) >= 0)
    for r in range(A.shape[0]):
        cols = A.indices[A.indptr[r]:A.indptr[r + 1]]
        assert np.all(np.diff(cols) > 0), f"row {r}: columns not strictly increasing"


@pytest.mark.parametrize("entry", corpus_params())
def test_shape_and_nnz_match_manifest(entry):
    A = read_matrix(entry["path"])
    assert isinstance(A, sp.csr_array)
    assert A.shape == (int(entry["rows"]), int(entry["cols"]))
    assert A.nnz == entry["nnz"]
    assert A.dtype == np.float64        # real, integer and pattern files alike
    field, symmetry, stored = _header(entry["path"])
    if symmetry == "symmetric":
        assert entry["symmetric"] == "yes"
        # the manifest counts the expanded matrix: both triangles, the diagonal once
        assert A.nnz == 2 * stored - _stored_diagonal(entry["path"]) > stored
        assert (A != A.T).nnz == 0
    else:
        assert A.nnz <= stored          # duplicates summed, never entries invented


def _stored_diagonal(path):
    with gzip.open(path, "rt") as fh:
        lines = (ln for ln in fh if not ln.startswith("%"))
        next(lines)
        return sum(1 for ln in lines if ln.split()[:2] and ln.split()[0] == ln.split()[1])


def test_corpus_has_symmetric_and_pattern_files():
    entries = corpus_entries()
    if not entries:
        pytest.skip(NO_CORPUS)
    kinds = {_header(e["path"])[:2] for e in entries}
    assert ("pattern", "symmetric") in kinds and ("real", "symmetric") in kinds
    assert ("real", "general") in kinds and ("pattern", "general") in kinds


# a few small files: real symmetric, pattern symmetric, pattern general, real general,
# integer general, rectangular
SMALL = ["bcsstk09", "Trefethen_500", "3elt", "rajat01", "cage8", "Franz6_id1959_aug", "lp_ship04l"]


@pytest.mark.parametrize("name", SMALL)
def test_values_match_scipy_mmread(name):
    entry = _entry(name)
    path = entry["path"]
    field, symmetry, stored = _header(path)
    A = read_matrix(path)
    R = _scipy_csr(path)
    R.sum_duplicates()
    _canonical(A)
    assert A.shape == R.shape
    assert A.nnz == R.nnz == entry["nnz"]
    np.testing.assert_array_equal(A.indptr, R.indptr)
    np.testing.assert_array_equal(A.indices, R.indices)
    if field == "pattern":
        np.testing.assert_array_equal(A.data, np.ones(A.nnz))
    else:
        np.testing.assert_array_equal(A.data, R.data.astype(np.float64))
        assert np.unique(A.data).size > 1
    if symmetry == "symmetric":
        assert (A != A.T).nnz == 0
        assert A.nnz > stored


@pytest.mark.parametrize("name", ["Trefethen_500", "3elt"])
def test_symmetric_expansion_from_the_raw_triangle(name):
    """Independent of SciPy's reader: parse the stored triangle by hand and mirror it."""
    entry = _entry(name)
    field, symmetry, stored = _header(entry["path"])
    assert symmetry == "symmetric"
    with gzip.open(entry["path"], "rt") as fh:
        lines = [ln.split() for ln in fh if not ln.startswith("%")]
    m, n, k = (int(v) for v in lines[0])
    body = lines[1:]
    assert len(body) == k == stored
    i = np.array([int(t[0]) - 1 for t in body])
    j = np.array([int(t[1]) - 1 for t in body])
    v = np.ones(k) if field == "pattern" else np.array([float(t[2]) for t in body])
    assert np.all(i >= j), "lower triangle expected"
    off = i != j
    rows = np.concatenate([i, j[off]])
    cols = np.concatenate([j, i[off]])
    vals = np.concatenate([v, v[off]])
    R = sp.csr_array(sp.coo_array((vals, (rows, cols)), shape=(m, n)))
    R.sum_duplicates()
    A = read_matrix(entry["path"])
    assert A.nnz == R.nnz == entry["nnz"]
    np.testing.assert_array_equal(A.indptr, R.indptr)
    np.testing.assert_array_equal(A.indices, R.indices)
    np.testing.assert_array_equal(A.data, R.data)


def test_plain_mtx_duplicates_summed_and_pattern_units(tmp_path):
    p = tmp_path / "dup.mtx"
    p.write_text("%%MatrixMarket matrix coordinate real general\n"
                 "3 4 4\n1 1 1.5\n1 1 2.0\n3 4 -1\n2 2 0\n")
    A = read_matrix(p)
    assert A.shape == (3, 4) and A.nnz == 3          # duplicate summed, explicit zero kept
    np.testing.assert_array_equal(A.toarray(), [[3.5, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, -1]])
    q = tmp_path / "pat.mtx"
    q.write_text("%%MatrixMarket matrix coordinate pattern symmetric\n3 3 3\n1 1\n3 1\n3 2\n")
    B = read_matrix(q)
    assert B.nnz == 5
    np.testing.assert_array_equal(B.toarray(), [[1, 0, 1], [0, 0, 1], [1, 1, 0]])


def test_missing_and_malformed_files_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.mtx: no such file"):
        read_matrix(tmp_path / "nope.mtx")
    bad = tmp_path / "bad.mtx"
    bad.write_text("this is not matrix market\n")
    with pytest.raises(ValueError, match=r"bad\.mtx: not a readable Matrix Market file"):
        read_matrix(bad)
