"""Parameter grids shared by the format modules and the profiler.

The profiler estimates fills for exactly these settings and the formats
offer exactly these settings to the search, so both read them from here.
"""

BLOCK_SIZES = tuple(range(1, 9))                  # BSR r and c
BSR_SHAPES = tuple((r, c) for r in BLOCK_SIZES for c in BLOCK_SIZES)
SELL_C = (4, 8, 16, 32)                           # SELL chunk heights
SELL_SIGMA = (1, 64, 512, 4096)                   # SELL sorting windows (1 = unsorted)
DBH_TILES = (4, 8, 16)                            # dense-block hybrid tile edges
DBH_THRESHOLDS = (0.25, 0.5, 0.75)                # tile fill above which a tile is dense
CSRC_OFFSETS = ("int8", "int16")                  # compressed-CSR offset widths
MAX_TABLE = 4096                                  # most distinct values a value table holds
