"""Errors the training loop raises on purpose (the search maps them to trial states).

    from training.errors import NonFiniteGradientsError, NonFiniteLossError
"""

from __future__ import annotations

import math


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf; the run cannot recover (the search prunes with reason=nan)."""

    def __init__(self, epoch: int, step: int, value: float):
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(
            f"training loss is {value} at epoch {epoch}, step {step}; lower optim.lr, enable "
            "trainer.grad_clip, or check the data"
        )


class NonFiniteGradientsError(NonFiniteLossError):
    """Every one of `in_a_row` optimizer steps had inf/NaN gradients (each was skipped, so the weights did
    not move): the run has diverged for good. A NonFiniteLossError, so the search prunes it with reason=nan
    like a NaN loss; `value` is NaN, the loss itself may have stayed finite."""

    def __init__(self, epoch: int, step: int, in_a_row: int):
        self.epoch, self.step, self.value, self.in_a_row = epoch, step, math.nan, in_a_row
        FloatingPointError.__init__(
            self,
            f"gradients were not finite (inf/NaN) for {in_a_row} optimizer steps in a row, up to epoch "
            f"{epoch}, step {step} (each step was skipped); lower optim.lr, enable trainer.grad_clip, or set "
            "trainer.amp: false if the run is in bf16",
        )


__all__ = ["NonFiniteGradientsError", "NonFiniteLossError"]
