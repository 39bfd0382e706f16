"""Signal summary of a pair: long spread, short spread or flat, with the reasons in words.

The summary answers at a glance "does the mean-reversion premise hold now, and what
does the z-score say?". Pure: numbers in, a frozen :class:`SignalSummary` out.

Rules
-----
With ``z`` the z-score of the last closed bar, ``e`` the entry threshold (default 2):

1. **Direction from z** (same convention as the backtest): ``z > e`` -> *short the
   spread* (sell 1 A, buy beta B: the spread is rich and should fall); ``z < -e`` ->
   *long the spread*; ``|z| <= e`` -> *flat*.
2. **Premise checks**, each ``ok`` / ``fail`` / ``unknown`` (no number yet):

   * cointegration: Engle-Granger p-value (or, if only that is known, the ADF p-value of
     the spread) ``p < alpha`` (default 0.05);
   * correlation of returns ``rho >= min_corr`` (default 0.5): the legs move together;
   * half-life ``h`` (bars) finite and ``h <= w`` (the rolling window): a deviation
     decays by half within the window the z-score is measured on, so the statistics
     see reversion happen.

3. ``premise`` is ``"fails"`` if any check fails, ``"holds"`` if all pass, otherwise
   ``"unknown"``. A direction from z is **withheld** (side ``flat``) when the premise
   fails; with an unknown premise it stands but ``confirmed`` is False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SIDES = ("long_spread", "short_spread", "flat")
LABELS = {"long_spread": "LONG SPREAD", "short_spread": "SHORT SPREAD", "flat": "FLAT"}


@dataclass(frozen=True, slots=True)
class SignalSummary:
    """What the pair says now.

    Attributes
    ----------
    side : {"long_spread", "short_spread", "flat"}
        The call after the premise checks.
    z_side : {"long_spread", "short_spread", "flat"}
        What the z-score alone says.
    premise : {"holds", "fails", "unknown"}
    confirmed : bool
        ``premise == "holds"``.
    label : str
        ``"SHORT SPREAD"``, ``"LONG SPREAD (unconfirmed)"``, ``"FLAT"`` ...
    reasons : tuple of str
        One sentence per rule, in rule order.
    """

    side: str
    z_side: str
    premise: str
    confirmed: bool
    label: str
    reasons: tuple[str, ...]


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(float(x))


def _pair_text(x: float, ref: float, decimals: int, *, comma: bool = False) -> tuple[str, str]:
    """``x`` and the threshold ``ref`` printed so the printed numbers agree with the
    comparison: start at ``decimals`` and add digits (up to 8) while ``x != ref`` prints
    the same as ``ref`` (ρ = 0.497 against 0.5 reads "0.497 < 0.500", never
    "0.50 < 0.50")."""
    spec = ",." if comma else "."
    for d in range(decimals, 9):
        xs, rs = format(x, f"{spec}{d}f"), format(ref, f"{spec}{d}f")
        if x == ref or xs != rs:
            return xs, rs
    return xs, rs


def signal_summary(
    z: float | None,
    *,
    window: int,
    entry: float = 2.0,
    coint_pvalue: float | None = None,
    adf_pvalue: float | None = None,
    corr: float | None = None,
    half_life_bars: float | None = None,
    alpha: float = 0.05,
    min_corr: float = 0.5,
) -> SignalSummary:
    """Direction and premise of a pair (see the module docstring for the rules).

    Parameters
    ----------
    z : float or None
        z-score of the last closed bar (None/NaN: not defined yet).
    window : int
        Rolling window ``w`` in bars (half-life is judged against it).
    entry : float
        Entry threshold ``e > 0``.
    coint_pvalue, adf_pvalue : float, optional
        Engle-Granger and ADF p-values (None: not run yet). Engle-Granger wins when
        both are given, because ADF on fitted residuals is biased towards stationarity.
    corr : float, optional
        Rolling correlation of log returns.
    half_life_bars : float, optional
        ``-ln 2 / ln(phi)`` of the spread's AR(1); ``inf`` when not mean-reverting.
    alpha : float
        Significance level of the cointegration check.
    min_corr : float
        Least correlation for the legs to count as moving together.

    Returns
    -------
    SignalSummary
    """
    if not entry > 0:
        raise ValueError(f"entry must be > 0, got {entry!r}")
    if int(window) < 2:
        raise ValueError(f"window must be >= 2, got {window!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    reasons: list[str] = []
    checks: list[str] = []

    if not _finite(z):
        z_side = "flat"
        reasons.append("z-score not defined yet: no direction")
    elif z > entry:
        z_side = "short_spread"
        reasons.append(
            f"z = {z:+.2f} is above the +{entry:.2f} entry: the spread is rich, "
            "short it (sell A, buy beta B)"
        )
    elif z < -entry:
        z_side = "long_spread"
        reasons.append(
            f"z = {z:+.2f} is below the -{entry:.2f} entry: the spread is cheap, "
            "long it (buy A, sell beta B)"
        )
    else:
        z_side = "flat"
        reasons.append(f"z = {z:+.2f} is inside the ±{entry:.2f} entry band: no edge")

    if _finite(coint_pvalue) or _finite(adf_pvalue):
        name, p = ("Engle-Granger", coint_pvalue) if _finite(coint_pvalue) else ("ADF", adf_pvalue)
        ptext, atext = _pair_text(p, alpha, 3)
        if p < alpha:
            checks.append("ok")
            reasons.append(f"{name} p = {ptext} < {atext}: the legs are cointegrated")
        else:
            checks.append("fail")
            reasons.append(f"{name} p = {ptext} ≥ {atext}: no evidence of cointegration")
    else:
        checks.append("unknown")
        reasons.append("cointegration not tested yet (run the ADF test)")

    if _finite(corr):
        ctext, mtext = _pair_text(corr, min_corr, 2)
        if corr >= min_corr:
            checks.append("ok")
            reasons.append(f"return correlation {ctext} ≥ {mtext}: legs move together")
        else:
            checks.append("fail")
            reasons.append(f"return correlation {ctext} < {mtext}: legs move independently")
    else:
        checks.append("unknown")
        reasons.append("correlation not defined yet")

    w = int(window)
    if half_life_bars is None or (isinstance(half_life_bars, float) and math.isnan(half_life_bars)):
        checks.append("unknown")
        reasons.append("half-life not known yet")
    elif not math.isfinite(half_life_bars):
        checks.append("fail")
        reasons.append("the spread shows no mean reversion (no finite half-life)")
    elif half_life_bars <= w:
        checks.append("ok")
        htext = _pair_text(half_life_bars, w, 1, comma=True)[0]
        reasons.append(f"half-life {htext} bars ≤ window {w}: reverts within the window")
    else:
        checks.append("fail")
        htext = _pair_text(half_life_bars, w, 1, comma=True)[0]
        reasons.append(
            f"half-life {htext} bars > window {w}: reversion too slow for this window"
        )

    if "fail" in checks:
        premise = "fails"
    elif all(c == "ok" for c in checks):
        premise = "holds"
    else:
        premise = "unknown"
    side = z_side
    if premise == "fails" and z_side != "flat":
        side = "flat"
        reasons.append(f"{LABELS[z_side].lower()} withheld: the mean-reversion premise fails")
    label = LABELS[side]
    if side != "flat" and premise != "holds":
        label += " (unconfirmed)"
    return SignalSummary(
        side=side,
        z_side=z_side,
        premise=premise,
        confirmed=premise == "holds",
        label=label,
        reasons=tuple(reasons),
    )
