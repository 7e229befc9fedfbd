"""asv suite of the harness (numpy's and scipy's layout): one module per package module.

``operators`` times the curvature operators of ``harness.model.two_layer``, ``sketches`` the
sketches
of ``harness.sketches``, ``algorithms`` one outer step of each registered method. Sizes are the
(n, m) grid of ``common.SIZES`` at d = 16; the large size runs only with ``NLT_ASV_LARGE=1``.
"""
