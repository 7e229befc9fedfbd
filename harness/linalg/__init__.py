"""Linear algebra below the model: the pattern products with their measured kernel routes
(``kernels``), the fast Walsh–Hadamard transform (``hadamard``) and the Krylov solvers on
operators (``krylov``: conjugate gradient, power iteration).

May import: ``harness.common``.
"""
