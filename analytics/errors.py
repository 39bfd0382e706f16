"""Domain errors of the analytics package.

Analytics never answer with garbage: when an estimator has too little data it
raises :class:`InsufficientData`, which says how many bars it needs and how many
it has, so a page can show "collecting: N of M bars" and an API a clear 400/409.
"""

from __future__ import annotations


class AnalyticsError(ValueError):
    """Base class: a request the analytics cannot answer as asked."""


class InsufficientData(AnalyticsError):
    """Not enough observations yet for this analytic.

    Parameters
    ----------
    what : str
        The analytic, e.g. ``"z-score (w=60)"``.
    needed : int
        Observations (bars) required.
    have : int
        Observations available now.
    """

    def __init__(self, what: str, needed: int, have: int) -> None:
        self.what, self.needed, self.have = what, int(needed), int(have)
        super().__init__(
            f"{what} needs {self.needed} bars, has {self.have} "
            f"({max(self.needed - self.have, 0)} more)"
        )

    @property
    def missing(self) -> int:
        return max(self.needed - self.have, 0)


class NoQuotes(InsufficientData):
    """No top-of-book quote yet for an instrument a request needs the bid and ask of
    (``source=mid`` pairs, ``fills=quote`` backtests): a 409 that says so, rather than
    an empty chart. ``needed``/``have`` count quoted bars (1 and 0)."""

    def __init__(self, names: str, why: str) -> None:
        super().__init__(f"top-of-book quotes of {names}", 1, 0)
        self.args = (
            f"no top-of-book quote of {names} yet: {why} needs the bid and ask (the book "
            "is ingested unless the run has --no-book)",
        )
