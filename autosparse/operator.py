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
    def _of_baseline(cls, base, plan: Plan, report):
        """``TunedMatrix([base], plan, report)`` for a baseline plan, without the checks that
        plan needs none of (0.7 us of a one-call tune()'s ~5)."""
        self = object.__new__(cls)
        self._fill((base,), plan, report, _A, base.shape, base.dtype)
        return self

    def _fill(self, layouts, plan, report, mode, a_shape, dtype):
        # LinearOperator.__init__ only validates and sets dtype and shape (~4 us, a fifth
        # of a one-call tune()); the layouts' shapes and dtypes are validated already
        m, n = a_shape
        self.__dict__.update(_layouts=layouts, plan=plan, report=report, _mode=mode, _a_shape=(m, n),
                             dtype=dtype, shape=(m, n) if mode in (_A, _AC) else (n, m))
        i = plan.serves["matvec"]
        if mode == _A and plan.layouts[i].of == "A":
            self._fwd = layouts[i].matvec        # the common route, without _product's closures

    # The four product callables are routed on first use (``__getattr__`` runs only
    # while an attribute is missing): a one-call tune() never pays for the other three.
    _ROUTES = {"_fwd": (True, False), "_adj": (False, False), "_mm_fwd": (True, True), "_mm_adj": (False, True)}

    def __getattr__(self, name):
        route = TunedMatrix._ROUTES.get(name)
        if route is None:
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
