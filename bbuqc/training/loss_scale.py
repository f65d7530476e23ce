"""Verdict SFT: the verdict line's weight in the loss, as an ms-swift loss scale.

A verdict answer is ~14 tokens, and the decision (通过 / 不通过) is the first of them: with every token
weighted 1 the decision is ~7% of the loss, and a random model learns the reasons' wording long
before it learns which verdict to write (docs/demo.md). `train.verdict_line_weight` scales the loss of
the verdict line (its token and the newline) against 1 for the `理由: ...` line.

ms-swift's hook for per-token loss weights is its loss-scale registry (`--loss_scale <name>`; the
template splits each assistant turn into weighted parts and the loss multiplies each token's
cross-entropy by its part's weight), so the weight is a `LossScale` registered there under one name.
"""

from __future__ import annotations

from functools import partial

from swift.loss_scale.base import LossScale
from swift.loss_scale.mapping import loss_scale_map

from bbuqc.protocol import VERDICTS

NAME = "bbuqc_verdict_line"


class VerdictLineLossScale(LossScale):
    """A verdict answer's line 1 (the verdict and its newline) weighs ``weight``, the rest 1."""

    is_binary = False  # weights other than 0/1: ms-swift keeps a loss_scale column for the loss

    def __init__(self, base_strategy: str = "default", *, weight: float = 1.0):
        super().__init__(base_strategy)
        self.weight = weight

    def get_loss_scale(self, context, **kwargs):
        # ms-swift asks for every trained part of the turn, the template's end-of-turn suffix too: only
        # a text whose line 1 is a verdict has a verdict line
        if isinstance(context, str) and "\n" in context:
            verdict_line, reason = context.split("\n", 1)
            if verdict_line.strip() in VERDICTS:
                return [verdict_line + "\n", reason], [self.weight, 1.0]
        return [context], [1.0]


def register(weight: float) -> str:
    """Register the loss scale with ``weight`` in ms-swift's registry; the name to pass as ``loss_scale``.

    In this process (the template resolves the name when it encodes the first row); registering again
    replaces the weight.
    """
    loss_scale_map[NAME] = partial(VerdictLineLossScale, weight=float(weight))
    return NAME
