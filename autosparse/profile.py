"""Profile: sampled structure statistics of a sparse matrix, and its fingerprint.

(Module docstring to be completed with the fingerprint's contents: see issue 3.)

Field reference (the contract format modules' ``estimate_nbytes`` rely on):

shape, nnz, dtype (value dtype after canonicalisation, e.g. "float64"), density.
rows / cols : LengthStats of row / column lengths (exact: from indptr / bincount).
row_length_counts : tuple of (length, number of rows) pairs, ascending, exact.
    ELL and HYB sizes for any width follow from it exactly.
lower_bandwidth, upper_bandwidth, bandwidth : max(i - j), max(j - i), max |i - j|.
n_diagonals : number of occupied diagonals (j - i values).
dia_fill : nnz / (n_diagonals * m) - DIA stores each occupied diagonal
    row-aligned over all m rows.
block_fill : {(r, c): nnz / (r * c * nonempty r×c blocks)} for r, c in 1..8,
    blocks aligned to multiples of r and c; estimated from a sample of block rows.
dense_tiles : {(tile, threshold): DenseTiles(covered_fraction, n_tiles)} - the
    fraction of nnz in aligned tile×tile tiles whose fill >= threshold, and the
    (estimated) number of such tiles, for the DBH grid.
ell_fill : nnz / (m * max row length).
sell_fill : {(C, sigma): nnz / padded slots} for the SELL grid.
n_distinct_values, distinct_capped : distinct values in a sample, capped at
    MAX_TABLE; ``distinct_capped`` is True when the cap was hit.
narrow_fraction : {"int8": f, "int16": f} - fraction of nnz whose offset from
    their row's first column fits the unsigned width (compressed CSR).
col_scatter : mean |j_k+1 - j_k| between consecutive entries of a row,
    sampled, divided by n (0: contiguous, ~1/3: uniformly random).
has_nonfinite : any NaN/Inf value (sampled values are not enough: exact).
memory : {format key: estimated bytes} for every format configuration.
"""
