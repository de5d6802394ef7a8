"""One linear program by HiGHS (dual simplex, one thread, quiet): the shared call of the planners' LPs."""

from __future__ import annotations

import highspy
import numpy as np
from numpy.typing import NDArray
from scipy import sparse

FloatArray = NDArray[np.float64]


def solve_lp(cost: FloatArray, lower: FloatArray, upper: FloatArray, matrix: sparse.csc_matrix,
             row_lower: FloatArray, row_upper: FloatArray) -> tuple[FloatArray | None, str]:
    """Minimise ``cost @ x`` with ``lower <= x <= upper`` and ``row_lower <= matrix @ x <= row_upper``.

    Returns the solution and "optimal", or None and HiGHS's model status in lower case.
    """
    n_rows, n_cols = matrix.shape
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_cols, n_rows
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lower, upper
    lp.row_lower_, lp.row_upper_ = row_lower, row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = matrix.indptr, matrix.indices, matrix.data
    solver = highspy.Highs()  # type: ignore[no-untyped-call]
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("threads", 1)
    solver.passModel(lp)
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None, solver.modelStatusToString(solver.getModelStatus()).lower()
    values: FloatArray = np.asarray(solver.getSolution().col_value, dtype=np.float64)
    return values, "optimal"
