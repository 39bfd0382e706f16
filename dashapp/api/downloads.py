"""Every download of the app goes through here: CSV always, Parquet where pyarrow is.

* File names carry the kind, the symbols, the timeframe and the UTC range of the rows:
  ``pair_BTCUSDT-ETHUSDT_1s_20240808T235415Z-20240809T000505Z.csv`` (see
  :func:`file_stem`).
* CSV cells that start with ``=``, ``+``, ``-`` or ``@`` (or a tab / carriage return)
  are neutralised against formula injection by a leading apostrophe, as OWASP advises:
  a spreadsheet would otherwise run ``=HYPERLINK(...)`` from a symbol or a dataset
  name. Numbers are written as numbers (a negative z-score stays ``-1.5``): only text
  cells are touched.
* ``ts`` columns of epoch milliseconds become ISO-8601 UTC with milliseconds, as in the
  HTTP API.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from analytics.timeframes import format_timeframe

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMATS = ("csv", "parquet")


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def iso_ms(ts_ms: np.ndarray) -> np.ndarray:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` strings."""
    dt = np.asarray(ts_ms, dtype="int64").astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(dt, unit="ms"), "Z")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy where every text cell starting with a formula character gets a ``'``."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        text = s.astype("string")
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False)
        if risky.any():
            out[col] = s.where(~risky, "'" + text)
    # Column names are cells too.
    out.columns = ["'" + c if str(c).startswith(FORMULA_PREFIXES) else c for c in out.columns]
    return out


def with_iso_times(frame: pd.DataFrame, columns: tuple[str, ...] = ("ts",)) -> pd.DataFrame:
    out = frame.copy()
    for col in columns:
        if col in out.columns and pd.api.types.is_integer_dtype(out[col]):
            out[col] = iso_ms(out[col].to_numpy())
    return out


def file_stem(kind: str, symbols: list[str] | tuple[str, ...], tf_ms: int | None,
              ts_ms: np.ndarray | None) -> str:
    """``kind_SYM1-SYM2_tf_STARTZ-ENDZ`` (``empty`` when there are no rows)."""
    rng = "empty"
    if ts_ms is not None and len(ts_ms):
        fmt = "%Y%m%dT%H%M%SZ"
        start = pd.Timestamp(int(np.min(ts_ms)), unit="ms").strftime(fmt)
        end = pd.Timestamp(int(np.max(ts_ms)), unit="ms").strftime(fmt)
        rng = f"{start}-{end}"
    # an instrument name's ':' (perp:BTCUSDT) is no file-name character: perp.BTCUSDT
    parts = [kind, "-".join(s.replace(":", ".") for s in symbols) if symbols else "all"]
    if tf_ms is not None:
        parts.append(format_timeframe(tf_ms))
    parts.append(rng)
    return "_".join(parts)


def frame_bytes(frame: pd.DataFrame, fmt: str = "csv") -> bytes:
    """The frame as CSV (formula-safe, ISO times) or Parquet bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        if not parquet_available():
            raise ValueError("Parquet needs pyarrow (pip install pyarrow); use CSV")
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    buf = io.StringIO()
    neutralise_formulas(with_iso_times(frame)).to_csv(
        buf, index=False, float_format="%.10g", na_rep=""
    )
    return buf.getvalue().encode()


def send_frame(frame: pd.DataFrame, stem: str, fmt: str = "csv") -> dict:
    """A ``dcc.Download`` payload for the frame (``dcc.send_bytes`` shape)."""
    from dash import dcc

    return dcc.send_bytes(frame_bytes(frame, fmt), f"{stem}.{fmt}")
