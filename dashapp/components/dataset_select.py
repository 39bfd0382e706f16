"""The data-source selector every analysis page shares: the live feed or a stored dataset.

One labelled select: "Live feed" first, then every uploaded dataset, each labelled with
what a trader needs to pick it (name, symbols, timeframe, bars). The URL carries the
choice as ``dataset=NAME`` (absent = live), so a link opens the same source again.

Values: the select's value for the live feed is :data:`LIVE_VALUE` (``"(live)"``: an
HTML option needs a string, ``""`` would select ``dbc.Select``'s hidden placeholder, and
no dataset name can start with a parenthesis); callbacks turn a select value into
``dataset: str | None`` with :func:`dataset_of` (``None`` = live), the form the queries
take (``live``, the data page's old value, still means the live feed in links: no
dataset may be named so). A dataset name in
the URL that is not stored falls back to live **with a visible note** (:func:`resolve`),
never silently.

Usage on a page::

    src = dataset_select.resolve(dataset)            # from the URL parameter
    dataset_select.selector(ids.Page.SOURCE, src)    # the labelled select (+ note)
    symbols = dataset_select.symbol_options(src.dataset)
    tfs = dataset_select.timeframe_options(src.dataset, SUPPORTED_UI)
"""

from __future__ import annotations

from dataclasses import dataclass

import dash_bootstrap_components as dbc
from dash import html

from analytics.timeframes import format_timeframe, parse_timeframe
from dashapp.services import get_services

__all__ = [
    "DATASET_TFS",
    "LIVE_LABEL",
    "LIVE_VALUE",
    "URL_PARAM",
    "Source",
    "dataset_label",
    "dataset_of",
    "label_of",
    "labelled",
    "options",
    "pick_legs",
    "query",
    "resolve",
    "selector",
    "symbol_options",
    "timeframe_options",
]

#: The select's value meaning "the live feed" (``None`` in Python, see :func:`dataset_of`).
LIVE_VALUE = "(live)"
LIVE_LABEL = "Live feed"
#: The URL query parameter naming the dataset (absent = live).
URL_PARAM = "dataset"
#: Coarser timeframes a dataset can be resampled to (those that are multiples of its own).
DATASET_TFS = ("5s", "15s", "1m", "5m", "15m", "1h", "4h", "1d")
#: Legacy value of the data page's select, still accepted in links: ``?dataset=live``
#: (a reserved name: :func:`ingest.store.dataset_rules.check_name` refuses it).
_LEGACY_LIVE = "live"


@dataclass(frozen=True, slots=True)
class Source:
    """The source a page shows: ``dataset`` (``None`` = live feed) and, when the URL asked
    for a dataset that is not stored, the ``note`` to show next to the select."""

    dataset: str | None
    note: str | None = None

    @property
    def value(self) -> str:
        """The select's value for this source."""
        return LIVE_VALUE if self.dataset is None else self.dataset

    @property
    def is_live(self) -> bool:
        return self.dataset is None


def dataset_of(value: object) -> str | None:
    """A select value (or URL parameter) -> dataset name, ``None`` for the live feed."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", LIVE_VALUE, _LEGACY_LIVE) else text


def _is_stored(name: str) -> bool:
    return bool(name) and get_services().datasets.get(name) is not None


def resolve(param: str | None) -> Source:
    """The URL parameter ``dataset`` -> the source to show. An unknown name falls back to
    the live feed with a note naming the datasets there are."""
    name = dataset_of(param)
    if name is None or _is_stored(name):
        return Source(name)
    stored = [d.name for d in get_services().datasets.list()]
    have = ", ".join(stored) if stored else "none uploaded yet"
    return Source(
        None, f"No dataset named {name[:64]!r}; showing the live feed. Datasets: {have}."
    )


def dataset_label(info) -> str:
    """``jan21 · BTCUSDT, ETHUSDT · 1h · 744 bars`` (bars per symbol; a range if they
    differ)."""
    rows = sorted(set(info.rows.values()))
    if not rows:
        bars = "no bars"
    elif len(rows) == 1:
        bars = f"{rows[0]:,} bars"
    else:
        bars = f"{rows[0]:,}–{rows[-1]:,} bars"
    return f"{info.name} · {', '.join(info.symbols)} · {format_timeframe(info.tf_ms)} · {bars}"


def options() -> list[dict]:
    """"Live feed" and every stored dataset, by name."""
    opts = [{"label": LIVE_LABEL, "value": LIVE_VALUE}]
    opts += [{"label": dataset_label(d), "value": d.name} for d in get_services().datasets.list()]
    return opts


def selector(
    id_, source: Source, *, label: str = "Source", note_id=None, width: int = 3,
    size: str | None = "sm",
) -> dbc.Col:
    """The labelled select (``id_``), with the fallback note under it when there is one.

    The note's id is ``note_id``, by default ``"<id_>-note"`` for a string id (a callback
    may rewrite it)."""
    if note_id is None and isinstance(id_, str):
        note_id = f"{id_}-note"
    note = html.Div(
        source.note or "",
        className="small text-warning dataset-note",
        **({"id": note_id} if note_id is not None else {}),
    )
    return dbc.Col(
        [
            dbc.Label(label, className="small mb-0 text-muted"),
            dbc.Select(id=id_, options=options(), value=source.value, size=size),
            note,
        ],
        xs=12,
        md=width,
        className="mb-2",
    )


def symbol_options(dataset: str | None) -> list[str]:
    """Symbols of the source: the ingested ones (live) or the dataset's own."""
    if dataset is None:
        return sorted(get_services().names())
    info = get_services().datasets.get(dataset)
    return [] if info is None else list(info.symbols)


def label_of(name: str) -> str:
    """What a picker shows for an instrument name: ``BTCUSDT · perp`` where the name
    carries its market (a symbol on two markets), the bare name otherwise (one-market
    runs and datasets look as before)."""
    if ":" not in name:
        return name
    try:
        return get_services().instrument(name).label
    except (KeyError, ValueError):
        return name


def labelled(names) -> list[dict]:
    """Select options ``{"label": label_of(name), "value": name}``, in the given order."""
    return [{"label": label_of(n), "value": n} for n in names]


def timeframe_options(dataset: str | None, live_tfs: tuple[str, ...]) -> list[str]:
    """Timeframes of the source: ``live_tfs`` for the feed; a dataset's own timeframe and
    the coarser :data:`DATASET_TFS` that are whole multiples of it (resampled exactly)."""
    if dataset is None:
        return list(live_tfs)
    info = get_services().datasets.get(dataset)
    if info is None:
        return list(live_tfs)
    return [format_timeframe(info.tf_ms)] + [
        t for t in DATASET_TFS
        if (ms := parse_timeframe(t)) > info.tf_ms and ms % info.tf_ms == 0
    ]


def pick_legs(symbols: list[str], a: str | None, b: str | None) -> tuple[str | None, str | None]:
    """Keep ``a``/``b`` when the source offers them, else its first two symbols."""
    a = a if a in symbols else (symbols[0] if symbols else None)
    b = b if b in symbols and b != a else next((s for s in symbols if s != a), None)
    return a, b


def follow(source: object, a: str | None, b: str | None, tf: str | None,
           live_tfs: tuple[str, ...]) -> tuple[list[dict], str | None, list[dict], str | None,
                                                list[str], str]:
    """What a page's leg and timeframe selects become when the source changes:
    ``(a options, a, b options, b, timeframe options, timeframe)``; the legs and the
    timeframe are kept when the new source offers them."""
    name = dataset_of(source)
    symbols = symbol_options(name)
    a, b = pick_legs(symbols, a, b)
    tfs = timeframe_options(name, live_tfs)
    opts = labelled(symbols)
    return opts, a, opts, b, tfs, tf if tf in tfs else tfs[0]


def query(dataset: str | None) -> dict:
    """The URL parameters of a source: ``{"dataset": NAME}``, or ``{}`` for live."""
    return {} if dataset is None else {URL_PARAM: dataset}
