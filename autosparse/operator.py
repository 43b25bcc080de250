"""TunedMatrix: the tuned layouts behind SciPy's LinearOperator interface.

Each product is routed to the layout the plan names for it.  A layout built
from Aᴴ serves A's products through its adjoint ones (rmatvec of A is the
matvec of its Aᴴ copy, and vice versa).  ``.T`` and ``.H`` are views that
share the layouts; for complex matrices the transpose uses
``Aᵀx = conj(Aᴴ conj(x))`` when no layout gives it directly.

Products accept ``out=`` and are safe to call from several threads at once:
layouts are immutable and the only state touched on a call is a cache of
compiled entry points, filled with atomic dict assignments.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .formats import baseline as _baseline
from .plan import Plan

# The four operators a TunedMatrix can stand for, relative to the tuned A.
_A, _AH, _AT, _AC = "A", "AH", "AT", "AC"          # A, Aᴴ, Aᵀ, conj(A)
_ADJOINT = {_A: _AH, _AH: _A, _AT: _AC, _AC: _AT}
_TRANSPOSE = {_A: _AT, _AT: _A, _AH: _AC, _AC: _AH}


class TunedMatrix(LinearOperator):
    """A sparse matrix in its tuned layout(s), usable wherever SciPy takes a LinearOperator.

    Attributes
    ----------
    plan : Plan            the decision, as JSON-able data
    report : Report | None what the tuner tried and measured (None for ``build``)
    nbytes : int           bytes of all layouts' arrays
    """

    _mode = _A                          # which operator this is: A, or a view of it (.T, .H, conj)

    def __new__(cls, *args, **kwargs):
        # LinearOperator.__new__ only warns about subclasses without _matvec/_matmat
        return object.__new__(cls)

    def __init__(self, layouts, plan: Plan, report=None, *, _mode=_A):
        layouts = tuple(layouts)
        base = layouts[0]
        a_shape = base.shape if plan.layouts[0].of == "A" else base.shape[::-1]
        mode = _mode if base.dtype.kind == "c" else {_AT: _AH, _AC: _A}.get(_mode, _mode)
        self._fill(layouts, plan, report, mode, a_shape, base.dtype)

    @classmethod
    def _of_baseline(cls, base, report_args):
        """``TunedMatrix([base], Plan.baseline(), Report(...))`` for tune()'s too-small path,
        without the checks a baseline plan needs none of.  The Report is built from
        ``report_args`` = (source, effort, workload, tuning seconds) when first asked for."""
        base.min_threaded_nnz = ONE_CALL_MIN_THREADED_NNZ
        self = object.__new__(cls)
        self._layouts = (base,)
        self.plan = Plan.baseline()
        self._report_args = report_args
        self.dtype = base.dtype
        self.shape = base.shape
        self._fwd = base.matvec
        return self

    @staticmethod
    def _as_given(A, report_args):
        """tune()'s too-small answer for a CSR or CSC that SciPy's kernels take as it is (see
        ``_AsGiven``), or None for any other matrix."""
        parts = _baseline.direct_parts(A)
        if parts is None:
            return None
        self = object.__new__(_AsGiven)
        self._A = A
        self._parts = parts
        self._report_args = report_args
        self.dtype = parts[1]
        self.shape = parts[2]
        return self

    def _fill(self, layouts, plan, report, mode, a_shape, dtype):
        # LinearOperator.__init__ only validates and sets dtype and shape (~4 us, a fifth
        # of a one-call tune()); the layouts' shapes and dtypes are validated already
        m, n = a_shape
        # plain attribute stores, never ``__dict__``: touching it turns the instance's inline
        # attribute values into a dict, and every attribute load on a product call gets slower
        self._layouts = layouts
        self.plan = plan
        self.report = report
        self._mode = mode
        self.dtype = dtype
        self.shape = (m, n) if mode in (_A, _AC) else (n, m)
        i = plan.serves["matvec"]
        if mode == _A and plan.layouts[i].of == "A":
            self._fwd = layouts[i].matvec        # the common route, without _product's closures

    # The four product callables are routed on first use (``__getattr__`` runs only
    # while an attribute is missing): a one-call tune() never pays for the other three.
    _ROUTES = {"_fwd": (True, False), "_adj": (False, False), "_mm_fwd": (True, True), "_mm_adj": (False, True)}

    def __getattr__(self, name):
        route = TunedMatrix._ROUTES.get(name)
        if route is None:
            if name == "report":                 # tune()'s too-small path keeps only its arguments
                from .search import Report
                source, effort, workload, seconds = self._report_args
                self.report = Report(source, effort, str(workload), plan=self.plan, tuning_s=seconds)
                return self.report
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        fn = self._product(forward=route[0], block=route[1])
        setattr(self, name, fn)              # an atomic attribute set: safe across threads
        return fn

    # -- routing -------------------------------------------------------------
    def _route(self, op):
        i = self.plan.serves[op]
        return self._layouts[i], self.plan.layouts[i].of

    def _product(self, forward, block=False):
        """Callable (x, out) computing this operator's forward or adjoint product."""
        mode = self._mode if forward else _ADJOINT[self._mode]
        want_adjoint_of_a = mode in (_AH, _AT)        # Aᴴ-type products (possibly conjugated)
        op = ("rmatmat" if block else "rmatvec") if want_adjoint_of_a else ("matmat" if block else "matvec")
        layout, side = self._route(op)
        # On an Aᴴ layout the roles swap: its forward product is Aᴴ.
        direct = (side == "A") != want_adjoint_of_a
        if direct:
            f = layout.matmat if block else layout.matvec
        else:
            g = layout.rmatmat if block else layout.rmatvec
            f = g
        if mode in (_A, _AH):
            return f
        # Aᵀ or conj(A): conjugate around the product.
        if direct:
            def conj_product(x, out=None, _f=f):
                y = _f(np.conjugate(x), out)
                return np.conjugate(y, out=y)
        else:
            if side == "A":
                # an A layout gives Aᵀ directly with conj=False
                def conj_product(x, out=None, _g=g):
                    return _g(x, out, conj=False)
            else:
                def conj_product(x, out=None, _g=g):
                    y = _g(np.conjugate(x), out)
                    return np.conjugate(y, out=y)
        return conj_product

    # -- LinearOperator interface -------------------------------------------
    def matvec(self, x, out=None):
        """This operator times a vector of shape (N,) or (N, 1)."""
        if type(x) is np.ndarray and x.ndim == 1:
            return self._fwd(x, out)
        return self._vector_product(x, out, self._fwd, self.shape[1])

    def rmatvec(self, x, out=None):
        """The adjoint times a vector of shape (M,) or (M, 1)."""
        if type(x) is np.ndarray and x.ndim == 1:
            return self._adj(x, out)
        return self._vector_product(x, out, self._adj, self.shape[0])

    def matmat(self, X, out=None):
        """This operator times a 2-D array (C- or F-ordered), natively."""
        return self._block_product(X, out, self._mm_fwd, self.shape[1])

    def rmatmat(self, X, out=None):
        return self._block_product(X, out, self._mm_adj, self.shape[0])

    def dot(self, x):
        if isinstance(x, np.ndarray) and not isinstance(x, np.matrix):
            if x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1):
                return self.matvec(x)
            if x.ndim == 2:
                return self.matmat(x)
        return super().dot(x)

    def __matmul__(self, x):
        if np.isscalar(x):
            raise ValueError("Scalar operands are not allowed, use '*' instead")
        return self.dot(x)

    def __call__(self, x):
        return self.dot(x)

    def _matvec(self, x):
        return self.matvec(x)

    def _rmatvec(self, x):
        return self.rmatvec(x)

    def _matmat(self, X):
        return self.matmat(X)

    def _rmatmat(self, X):
        return self.rmatmat(X)

    def _adjoint(self):
        return self._view(_ADJOINT[self._mode])

    def _transpose(self):
        return self._view(_TRANSPOSE[self._mode])

    def _view(self, mode):
        return TunedMatrix(self._layouts, self.plan, self.report, _mode=mode)

    # -- helpers ---------------------------------------------------------------
    def _vector_product(self, x, out, fn, n):
        is_matrix = isinstance(x, np.matrix)
        x = _dense(x)
        if x.ndim == 2 and x.shape[1] == 1 and x.shape[0] == n:
            o = out
            if isinstance(out, np.ndarray) and out.ndim == 2 and out.shape[1:] == (1,):
                if not out.flags.c_contiguous:
                    raise ValueError("out of shape (M, 1) must be contiguous")
                o = out.reshape(-1)                      # a view: results land in out
            y = fn(x.reshape(-1), o)
            y = y.reshape(-1, 1) if out is None else out
        elif x.ndim == 1:
            y = fn(x, out)
        else:
            raise ValueError(f"dimension mismatch: vector of shape {x.shape} for an operator of shape {self.shape}; "
                             f"expected ({n},) or ({n}, 1)")
        return np.asmatrix(y) if is_matrix else y

    def _block_product(self, X, out, fn, n):
        is_matrix = isinstance(X, np.matrix)
        X = _dense(X)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D array of shape ({n}, k), got shape {X.shape}")
        y = fn(X, out)
        return np.asmatrix(y) if is_matrix else y

    # -- extras ----------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return sum(layout.nbytes for layout in self._layouts)

    @property
    def layouts(self) -> tuple:
        return self._layouts

    def to_scipy(self):
        """This operator as a canonical ``scipy.sparse.csr_array``."""
        i = self.plan.serves["matvec"]
        A = self._layouts[i].to_csr()
        if self.plan.layouts[i].of == "AH":
            A = A.T.conj().tocsr()
        if self._mode == _AH:
            A = A.T.conj()
        elif self._mode == _AT:
            A = A.T
        elif self._mode == _AC:
            A = A.conj()
        from ._checks import as_csr
        return as_csr(A)

    def __repr__(self):
        m, n = self.shape
        view = {_A: "", _AH: " (adjoint view)", _AT: " (transpose view)", _AC: " (conjugate view)"}[self._mode]
        return f"<TunedMatrix {m}x{n} {self.dtype} {self.plan.describe()}{view}>"


# A product on the threads has fixed costs (the row split, the entry point, waking the
# workers: 20-50 us) and, on a shared 2-core machine, a neighbour's load can stall one
# thread: products of 0.2-1 ms measured from 0.65x to 1.34x SciPy's serial one, run to run.
# Nothing is measured for a workload too small to tune, so its products take the threads
# only where the split pays whatever happens (2x from 1M entries).
ONE_CALL_MIN_THREADED_NNZ = 1_000_000


class _AsGiven(TunedMatrix):
    """The matrix as given, for a workload too small to tune, when it is a CSR or CSC that
    SciPy's kernels take as it is.  Its A x runs SciPy's kernel on A's arrays from this
    class's own frame; the Baseline layout behind every other product, view or attribute
    is made on first use.  tune() plus one A x of a small matrix must cost no more than
    SciPy's ``A @ x`` alone (3 us of dispatch around its kernel), and a second object,
    a second frame per call and the attribute stores they take are a third of that."""

    plan = Plan.baseline()

    def __getattr__(self, name):
        if name == "_layouts":
            base = _baseline.of_direct(self._A, self._parts)
            base.min_threaded_nnz = ONE_CALL_MIN_THREADED_NNZ
            self._layouts = (base,)
            return self._layouts
        return TunedMatrix.__getattr__(self, name)

    def matvec(self, x, out=None):
        m, n = self.shape
        if out is None and type(x) is np.ndarray and x.dtype == self.dtype and x.shape == (n,) \
                and x.flags.c_contiguous:
            (kernels, gathers_adjoint), A = self._parts[0], self._A
            if gathers_adjoint or len(A.indices) < ONE_CALL_MIN_THREADED_NNZ:
                y = np.zeros(m, x.dtype)
                kernels[0](m, n, A.indptr, A.indices, A.data, x, y)
                return y
        return TunedMatrix.matvec(self, x, out)         # the threads, or an input SciPy's kernel can't take


def _dense(x):
    import scipy.sparse as sp
    if sp.issparse(x):
        raise TypeError(f"expected a dense vector or array, got sparse {type(x).__name__}")
    if isinstance(x, np.ndarray):
        return np.asarray(x)
    arr = np.asarray(x)
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"expected numeric data, got dtype {arr.dtype}")
    return arr
