"""Read-side rules every trade store backend shares (no SQL here).

A backend answers "which instruments are stored, and the highest trade id of each"
(``_last_ids()``, each in its own way: SQLite skips from one instrument to the next
through the primary key, PostgreSQL asks its ``instruments`` table) and "which ids are
stored in a range"; what the app is told from those answers is decided once, here.
"""

from __future__ import annotations

from collections.abc import Iterable

from analytics.instruments import Instrument

__all__ = ["InstrumentReads", "missing_ranges_of"]


def missing_ranges_of(ids: Iterable[int], first_id: int, last_id: int
                      ) -> list[tuple[int, int]]:
    """Sub-ranges of ``[first_id, last_id]`` holding none of ``ids`` (the stored ids of
    that range, ascending), ascending: what a back-fill still has to fetch."""
    first_id, last_id = int(first_id), int(last_id)
    out: list[tuple[int, int]] = []
    expect = first_id
    for tid in ids:
        if tid > expect:
            out.append((expect, tid - 1))
        expect = tid + 1
    if expect <= last_id:
        out.append((expect, last_id))
    return out


class InstrumentReads:
    """Mixin of a :class:`~ingest.store.interface.TradeStore` backend: the stored
    instruments, their names and where each feed resumes, from ``_last_ids()``."""

    def _last_ids(self) -> list[tuple[tuple[str, str, str], int]]:
        """((venue, market, symbol), max trade_id) per stored instrument, in key order."""
        raise NotImplementedError

    def _name(self, venue: str, market: str, symbol: str) -> str:
        return self.name(Instrument(venue, market, symbol))

    def instruments(self) -> list[Instrument]:
        """The instruments with at least one stored trade, in key order."""
        return [Instrument(*key) for key, _ in self._last_ids()]

    def symbols(self) -> list[str]:
        """Names of the instruments with at least one stored trade, in key order."""
        return [self._name(*key) for key, _ in self._last_ids()]

    def last_trade_ids(self) -> dict[str, int]:
        """Highest stored trade_id per instrument name (where a feed resumes)."""
        return {self._name(*key): last for key, last in self._last_ids()}
