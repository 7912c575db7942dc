"""The single-level step: one pass on a training batch gives both the weights'
gradient and the cost that moves alpha (DSNAS, SNAS, GDAS, and DARTS' single
level)."""
from __future__ import annotations

from .passes import CostPasses
from .state import SearchState


class SingleLevelStep:
    """One training step of a search (its :class:`SearchState`), through its :class:`CostPasses`."""

    def __init__(self, state: SearchState, passes: CostPasses):
        self.state, self.passes = state, passes

    def __call__(self, x, y, generator, stats=None, outs=None, update_weights=True, update_alpha=True) -> float:
        """Draw Z, run the one pass on (x, y), then move alpha along the train cost
        (summed over the cells sharing it) and the weights along their gradient.
        The train costs and outputs go to ``stats`` and ``outs``.

        Returns the batch's training loss (a float)."""
        st = self.state
        samples = self.passes.draw(generator)
        loss, logits, z = self.passes.forward_backward(x, y, samples)
        self.passes.add_to_stats(stats, outs, "train", logits, y, z, samples)
        checks = {"the train loss": loss}
        if update_alpha:
            st.update_alpha(samples, {t: z[t].grad.sum(0) for t in z})
            checks.update({f"alpha ({t})": a for t, a in st.alpha.items()})
        if update_weights:
            checks["the weights' gradient norm"] = st.update_weights()
        st.check_finite(checks)
        return loss.item()
