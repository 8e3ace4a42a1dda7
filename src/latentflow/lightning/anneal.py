"""KL-annealing schedules (paper Supp. D): zero weight for a while, then linear to 1."""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULE_KINDS = ("epoch", "step", "none")


@dataclass(frozen=True)
class KLSchedule:
    """KL weight as a function of training progress.

    * ``epoch``: ``floor`` for ``zero`` epochs, then linear to 1 over ``rampup`` epochs, raised
      at every step inside an epoch (paper: 4 + 10 for PTB, 20 + 15 for music);
    * ``step``: the same in optimizer steps;
    * ``none``: always 1 (a plain ELBO).

    ``floor`` is the weight of the first phase: 0 in the paper, 1e-5 in the reference code.

    >>> s = KLSchedule("epoch", zero=4, rampup=10)
    >>> s.weight(epoch=3, fraction=0.5), s.weight(epoch=9, fraction=0.0), s.weight(epoch=20)
    (0.0, 0.5, 1.0)
    """

    kind: str = "epoch"
    zero: float = 0
    rampup: float = 0
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(
                f"anneal.kind must be one of {list(SCHEDULE_KINDS)}, got {self.kind!r}"
            )
        if self.zero < 0 or self.rampup < 0:
            raise ValueError("anneal.zero and anneal.rampup must be >= 0")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"anneal.floor must lie in [0, 1], got {self.floor}")

    def weight(self, epoch: int = 0, fraction: float = 0.0, step: int = 0) -> float:
        """Weight at ``epoch`` + ``fraction`` of it (epoch kind) or at optimizer ``step``."""
        if self.kind == "none":
            return 1.0
        progress = epoch + fraction if self.kind == "epoch" else float(step)
        if progress < self.zero:
            return self.floor
        if self.rampup == 0:
            return 1.0
        return min(1.0, max(self.floor, (progress - self.zero) / self.rampup))
