r"""The cost-model layer: each method's time per outer iteration, phase by phase, at any size.

Modules: ``profile`` (a machine's fitted kernel rates, one JSON file), ``pricing`` (``Costs``:
the kernels as the methods call them), ``predict`` (``predict``, ``frontier``), ``accuracy``
(predicted against measured). The formulas are the plugins' own: a method's
``step_seconds``, a model's ``op_costs``, a sketch's ``work``/``seconds``; the calibration
that measures a profile is ``harness.perf.calibrate`` (``nlt-bench --calibrate``). This layer
sits above the methods and below execution: the runner asks it for a predicted step.
May import: ``harness.common``, ``linalg``, ``model``, ``sketches``, ``algorithms``.

Spec §2 counts costs in flops; a clock does not. This module measures the rates of the few
kernels every method is made of once per machine (``nlt-bench --calibrate``) and adds them up
along each method's phases, as its ``step`` runs them:

    predicted(phase) = Σ over the kernels the phase calls of  t_kernel(work)
    t_kernel(work)   = overhead + Σ_j work_j / rate_j

with one or two kinds of work per kernel (elements touched, flops), fitted by non-negative
least squares on relative error over a few sizes, so that a small size is not mispredicted by
latency and a large one not by cache. The products with the pattern D are predicted on the
route ``harness.linalg.kernels`` would take (``kernels=auto``: the route the fitted rates say is
faster, with the selector's tie margin in favour of float).

Kernels (names in the profile, work in brackets; C = A·B with A p×k, B k×q):

============ ================================================ ===============================
kernel       what is timed                                    work
============ ================================================ ===============================
xw           X Wᵀ (n×d · d×m), the forward GEMM                elements pq+(p+q)k, flops 2pqk
gram_float   D Dᵀ as a float GEMM; any dense large-k GEMM      elements pq+(p+q)k, flops 2pqk
gram_int8    D Dᵀ by ``torch._int_mm``, the int8 cast included  the same
mm_float     D Z (n×m · m×k), float                           elements nm+(m+n)k, flops 2nmk
mm_int8      D Z by the int8 fixed-point split                 the same
rmm_float    Dᵀ Y (m×n · n×k), float                          the same
rmm_int8     Dᵀ Y, int8 split                                 the same
qr           R of an s×n matrix (``torch.linalg.qr``)          elements sn, flops 2sn² − 2n³/3
cholesky     ``torch.linalg.cholesky`` of n×n                  elements n², flops n³/3
trsv         ``solve_triangular`` n×n, one right-hand side     elements n²
copy         ``dst.copy_(src)``                                bytes read + written
elementwise  one in-place pass (``relu_``) over k elements      elements
fwht         ``harness.linalg.hadamard.fwht`` of rows × N             elements rows·N·passes,
                                                              flops 2·rows·N·Σ_j 2^{b_j}
fault        a fresh buffer's first write (``torch.empty``,    bytes
             then ``fill_``) less the same write on a warm
             buffer: the page faults of a new allocation
sketch_<s>   sketch s drawn and B = S Jᵀ formed               elements, transform flops and
             (``sketch_problem(...).sketch_jacobian``)        n·s rows (``sketch_work``)
============ ================================================ ===============================

Each fit carries a *size curve* (``Fit.curve``): at every calibrated size, measured over
fitted, interpolated in log–log between sizes. The straight line holds a kernel's shape in
its kinds of work; the curve holds what changes with the working set (cache-resident, then
memory-bound, then freshly faulted pages), so that a pass over a 4 GB pattern is not priced
at the rate of a 1 MB one. Timings of ``xw`` write into a preallocated output; a step that
allocates its n×m buffer pays ``fault`` for it on top (``Costs.fresh``).

Beyond the kernels, a step pays what no kernel timing in a tight loop sees: Python and
dispatch per torch call, small temporaries, the phase clock, and caches and allocator state
left by the loss evaluation the runner runs between steps (in a loop of ``linearize`` alone
a 256×2048 forward takes 0.17 ms here; with the loss evaluated between calls, 0.7 ms). The
calibration measures that where it happens: the *step ladder* runs every method's own steps
in the runner's loop (a timed step, then the loss) at a few sizes, ``LADDER``, from where
fixed costs dominate to where D streams from memory, and keeps per phase the ratio measured
/ kernel model as a curve over the model's seconds per occurrence of the phase (per CG
iteration for an inner solve, per build for a refresh; ``Profile.phase_curves``).
``predict`` multiplies each phase's kernel-model time by its curve's factor at that time,
interpolated in log–log, held below the first point, and above the top point held as
seconds, not as a ratio (``ladder_factor``: the overheads it measures do not grow with the
work). gn_sketch's sketch and factor phases have one
curve per sketch and factorisation (``phase_key``); the sketches themselves are kernels of
their own (``sketch_<name>``: the draw and B = S Jᵀ timed whole, ``sketch_work``). No ladder
size and no sketch size is a cell of a committed sweep: no phase is fitted to the cells it
is judged on.

Each is measured per dtype (float32 and float64; the int8 routes exist for float32 only).
The profile is a JSON file (``Profile``), written by ``calibrate`` and read by ``predict``,
``frontier`` and ``predicted_vs_measured``. Inner iterations k and the refresh share f are
*predicted* too (``harness.costmodel.inner``: k from the sketch ratio and tolerance, f from
the adaptive rebuild rate, both fitted on the ladder), never taken from the cell predicted.
``reports/profiles/h100_datasheet.json`` holds an
NVIDIA H100 SXM built from its datasheet, labelled as a prediction.

Example
-------
>>> prof = Profile.synthetic(flops=1e9)
>>> t = predict("gd", {}, n=10, m=100, d=2, profile=prof)
>>> sorted(t)
['forward', 'gradient', 'total', 'update']
"""

from harness.costmodel.accuracy import (
    GOOD_RATIO,
    predicted_vs_bench,
    predicted_vs_measured,
    ratio_summary,
)
from harness.costmodel.predict import (
    DEFAULT_REFRESH_EVERY,
    check_depth,
    fits_memory,
    frontier,
    inner_model,
    method_params,
    modelled,
    modelled_methods,
    predict,
    predict_routes,
    predicted_inner,
    predicted_refresh_every,
    render_predictions,
)
from harness.costmodel.pricing import Costs
from harness.costmodel.profile import (
    DATASHEET_SOURCE,
    DTYPES,
    SCHEMA,
    Fit,
    Profile,
    curve_factor,
    fit_kernel,
    kernel_table,
    ladder_factor,
    ladder_key,
    machine_profile,
    merged_curve,
    newest_measured,
    render_profile,
)

__all__ = ["Costs", "DATASHEET_SOURCE", "DEFAULT_REFRESH_EVERY", "DTYPES", "Fit", "GOOD_RATIO",
           "Profile", "SCHEMA", "check_depth", "curve_factor", "fit_kernel", "fits_memory",
           "frontier", "inner_model", "kernel_table", "ladder_factor", "ladder_key",
           "machine_profile", "merged_curve", "method_params", "modelled", "modelled_methods",
           "newest_measured", "predict", "predict_routes", "predicted_inner",
           "predicted_refresh_every", "predicted_vs_bench", "predicted_vs_measured",
           "ratio_summary", "render_predictions", "render_profile"]
