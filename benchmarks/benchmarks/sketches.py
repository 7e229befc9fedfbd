"""B = S Jᵀ for each sketch of ``harness.sketches`` at s = 2n (spec §4)."""

from __future__ import annotations

from .common import LARGE_ENABLED, SIZES, generator, problem


def _registry():
    try:
        from harness.sketches import SKETCHES
    except ImportError:  # a commit before the sketch registry
        return None
    return SKETCHES


def _names() -> list[str]:
    reg = _registry()
    return reg.names() if reg is not None else ["none"]


class SketchJacobian:
    params = [_names(), SIZES]
    param_names = ["sketch", "n_m"]
    timeout = 300

    def setup(self, name, size):
        reg = _registry()
        if reg is None or name not in reg:
            raise NotImplementedError(f"sketch {name!r} not in this commit")
        cls = reg.get(name)
        p = problem(size)
        self.jac = p.linearize().jacobian
        n, m, d = self.jac.n, self.jac.m, self.jac.d
        s = 2 * n
        # sketches of the md-long columns cost Ω(n·md·s): small problems only
        if getattr(cls, "explicit", False) and n * m * d * s > 1e10 and not LARGE_ENABLED:
            raise NotImplementedError(f"{name} acts on explicit md-columns: too slow here")
        try:
            self.sketch = cls(m, d, s, generator(3))
        except Exception as exc:  # size refused by the sketch itself
            raise NotImplementedError(str(exc)) from exc

    def time_sketch_jacobian(self, name, size):
        self.sketch.sketch_jacobian(self.jac)
