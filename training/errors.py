"""Errors the training loop raises on purpose (the search maps them to trial states).

    from training.errors import NonFiniteLossError
"""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf; the run cannot recover (the search prunes with reason=nan)."""

    def __init__(self, epoch: int, step: int, value: float):
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(
            f"training loss is {value} at epoch {epoch}, step {step}; lower optim.lr, enable "
            "trainer.grad_clip, or check the data"
        )


__all__ = ["NonFiniteLossError"]
