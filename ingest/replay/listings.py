"""What the replay exchange lists: ``exchangeInfo`` and the 24 h ticker, from its tape.

Binance answers "which instruments trade" with ``GET /api/v3/exchangeInfo`` (spot) and
``GET /fapi/v1/exchangeInfo`` (USDⓈ-M), and "how much each traded" with
``GET /api/v3/ticker/24hr`` / ``GET /fapi/v1/ticker/24hr``. The replay answers both from
the tape it plays (any tape: the bundled recordings or a wide tape), so symbol
universes (``--symbols top:N`` / ``all``, :mod:`ingest.universe`) are tested on loopback:

* ``exchangeInfo``: one entry per instrument of the market, status ``TRADING``, quote
  asset ``USDT`` (the base asset is the symbol without its ``USDT`` suffix), futures
  entries ``contractType: PERPETUAL``. ``PRICE_FILTER tickSize`` / ``LOT_SIZE stepSize``
  come from the tape's listing hints (``Tape.listings``, set by wide tapes) or else
  from the recorded decimals (the finest decimal place any price / quantity uses:
  ``"61800.30"`` and ``"61800.10"`` only → tick 0.1). An instrument with a listing
  time (``listed_ms``, a wide tape's late listing) is listed only once the replay's
  clock (``ReplayServer.tape_clock_ms``) reaches it; ``onboardDate`` is that time, or
  30 days before the tape for the others.
* ``ticker/24hr``: the RECORDING's figures per listed instrument, the tape standing
  for the last 24 h: ``volume`` = Σ qty, ``quoteVolume`` = Σ price × qty (exact
  decimals; spot written with 8 places, futures with 2), ``count`` = trades,
  ``openPrice``/``lastPrice`` = first/last trade, ``high``/``low``, ``firstId``/
  ``lastId``, ``openTime``/``closeTime`` = first/last trade time, ``priceChange`` =
  last − open, ``priceChangePercent`` = 100 × change / open (3 places),
  ``weightedAvgPrice`` = quoteVolume / volume. Whole-tape figures, not a window over
  what has played, so ``top:N`` ranks the same at any moment of the replay.

Pure functions of the tape (plus the clock passed in); :mod:`ingest.replay.rest`
serves them with Binance's weights and errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from operator import mul

from ingest.replay.tapes import BOOK_KIND, Tape

DAY_MS = 86_400_000
#: onboardDate of instruments listed before the tape starts: this long before it.
PRELISTED_MS = 30 * DAY_MS
QUOTE_ASSET = "USDT"
#: Binance's published REQUEST_WEIGHT limits per minute (docs/binance-protocol.md).
WEIGHT_LIMIT = {"spot": 6000, "perp": 2400}


@dataclass(frozen=True)
class InstrumentStats:
    """One instrument's whole-tape trade figures (exact decimals)."""

    market: str
    symbol: str
    count: int
    first_id: int
    last_id: int
    open_time: int
    close_time: int
    open_price: str
    last_price: str
    last_qty: str
    high_price: str
    low_price: str
    volume: Decimal
    quote_volume: Decimal
    tick: str
    step: str
    listed_ms: int | None


def tape_stats(tape: Tape) -> dict[tuple[str, str], InstrumentStats]:
    """Per ``(market, symbol)``: the trades' figures of the module docstring.

    One pass over the tape (Decimal sums: ~1 s per million trades); the replay REST
    computes it once, at the first listing request."""
    groups: dict[tuple[str, str], list] = {}
    for ev in tape.events:
        if ev.kind == BOOK_KIND:
            continue
        key = (ev.market, ev.symbol)
        g = groups.get(key)
        if g is None:
            g = groups[key] = [[], [], [], []]  # events, ids, prices, quantities
        g[0].append(ev)
        g[1].append(ev.trade_id)
        g[2].append(ev.data["p"])
        g[3].append(ev.data["q"])
    acc: dict[tuple[str, str], list] = {}
    for key, (evs, ids, ps, qs) in groups.items():
        prices = list(map(Decimal, ps))
        quantities = list(map(Decimal, qs))
        hi = max(range(len(prices)), key=prices.__getitem__)
        lo = min(range(len(prices)), key=prices.__getitem__)
        acc[key] = [
            len(evs), min(ids), max(ids), evs[0].time_ms, evs[-1].time_ms, ps[0], ps[-1],
            qs[-1], None, ps[hi], None, ps[lo], sum(quantities, Decimal(0)),
            sum(map(mul, prices, quantities), Decimal(0)),
            max(map(_places, set(ps))), max(map(_places, set(qs))),
        ]
    out: dict[tuple[str, str], InstrumentStats] = {}
    for key, a in acc.items():
        hint = tape.listings.get(key, {})
        out[key] = InstrumentStats(
            market=key[0], symbol=key[1], count=a[0], first_id=a[1], last_id=a[2],
            open_time=a[3], close_time=a[4], open_price=a[5], last_price=a[6],
            last_qty=a[7], high_price=a[9], low_price=a[11], volume=a[12],
            quote_volume=a[13],
            tick=hint.get("tick") or _unit(a[14]), step=hint.get("step") or _unit(a[15]),
            listed_ms=hint.get("listed_ms"),
        )
    return out


def _places(text: str) -> int:
    """Decimal places a recorded value really uses (``"61800.30"`` → 1)."""
    dot = text.find(".")
    return 0 if dot < 0 else len(text[dot + 1:].rstrip("0"))


def _unit(places: int) -> str:
    return "1" if places <= 0 else "0." + "0" * (places - 1) + "1"


def _decimals(unit: str) -> int:
    return max(0, -Decimal(unit).normalize().as_tuple().exponent)


def _fixed(value: Decimal, places: int) -> str:
    q = Decimal(1).scaleb(-places)
    return format(value.quantize(q, rounding=ROUND_HALF_EVEN), "f")


def listed(stats: InstrumentStats, now_ms: int) -> bool:
    """Whether the exchange lists the instrument at tape time ``now_ms``."""
    return stats.listed_ms is None or stats.listed_ms <= now_ms


def listed_stats(
    stats: dict[tuple[str, str], InstrumentStats], market: str, now_ms: int
) -> list[InstrumentStats]:
    """The market's listed instruments, by symbol."""
    return sorted(
        (s for (m, _), s in stats.items() if m == market and listed(s, now_ms)),
        key=lambda s: s.symbol,
    )


def onboard_ms(stats: InstrumentStats, tape: Tape) -> int:
    return stats.listed_ms if stats.listed_ms is not None else (
        tape.first_time_ms - PRELISTED_MS)


def exchange_info(
    tape: Tape, stats: dict[tuple[str, str], InstrumentStats], market: str, now_ms: int,
    symbol: str | None = None,
) -> dict:
    """Binance's exchangeInfo document of ``market`` at tape time ``now_ms`` (one
    ``symbol`` when given: the caller has checked it is listed)."""
    items = [s for s in listed_stats(stats, market, now_ms)
             if symbol is None or s.symbol == symbol]
    limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": WEIGHT_LIMIT[market]},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1,
         "limit": 1200 if market == "perp" else 61000},
    ]
    if market == "perp":
        return {
            "timezone": "UTC", "serverTime": now_ms, "futuresType": "U_MARGINED",
            "rateLimits": limits, "exchangeFilters": [],
            "assets": [{"asset": QUOTE_ASSET, "marginAvailable": True,
                        "autoAssetExchange": "-10000"}],
            "symbols": [_perp_symbol(s, tape) for s in items],
        }
    return {
        "timezone": "UTC", "serverTime": now_ms, "rateLimits": limits,
        "exchangeFilters": [], "symbols": [_spot_symbol(s) for s in items],
    }


def _base_asset(symbol: str) -> str:
    return symbol[: -len(QUOTE_ASSET)] if symbol.endswith(QUOTE_ASSET) else symbol


def _perp_symbol(s: InstrumentStats, tape: Tape) -> dict:
    return {
        "symbol": s.symbol, "pair": s.symbol, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": onboard_ms(s, tape),
        "status": "TRADING", "baseAsset": _base_asset(s.symbol),
        "quoteAsset": QUOTE_ASSET, "marginAsset": QUOTE_ASSET,
        "pricePrecision": _decimals(s.tick), "quantityPrecision": _decimals(s.step),
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
        "underlyingSubType": [],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": s.tick, "maxPrice": "1000000",
             "tickSize": s.tick},
            {"filterType": "LOT_SIZE", "minQty": s.step, "maxQty": "10000000",
             "stepSize": s.step},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def _spot_symbol(s: InstrumentStats) -> dict:
    tick, step = _fixed(Decimal(s.tick), 8), _fixed(Decimal(s.step), 8)
    return {
        "symbol": s.symbol, "status": "TRADING", "baseAsset": _base_asset(s.symbol),
        "baseAssetPrecision": 8, "quoteAsset": QUOTE_ASSET, "quotePrecision": 8,
        "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT",
                       "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick,
             "maxPrice": "1000000.00000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000000.00000000",
             "stepSize": step},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
    }


def ticker_24hr(s: InstrumentStats) -> dict:
    """Binance's 24 h ticker object of one instrument (module docstring)."""
    spot = s.market == "spot"
    p_places = 8 if spot else _decimals(s.tick)
    q_places = 8 if spot else _decimals(s.step)
    open_p, last_p = Decimal(s.open_price), Decimal(s.last_price)
    change = last_p - open_p
    pct = change * 100 / open_p if open_p else Decimal(0)
    wavg = s.quote_volume / s.volume if s.volume else Decimal(0)
    out = {
        "symbol": s.symbol,
        "priceChange": _fixed(change, p_places),
        "priceChangePercent": _fixed(pct, 3),
        "weightedAvgPrice": _fixed(wavg, p_places),
    }
    if spot:
        out["prevClosePrice"] = _fixed(open_p, 8)
    out.update(lastPrice=s.last_price, lastQty=s.last_qty)
    if spot:  # the replay keeps no resting book: zero, as for an empty side
        out.update(bidPrice="0.00000000", bidQty="0.00000000", askPrice="0.00000000",
                   askQty="0.00000000")
    out.update(
        openPrice=s.open_price, highPrice=s.high_price, lowPrice=s.low_price,
        volume=_fixed(s.volume, q_places),
        quoteVolume=_fixed(s.quote_volume, 8 if spot else 2),
        openTime=s.open_time, closeTime=s.close_time, firstId=s.first_id,
        lastId=s.last_id, count=s.count,
    )
    return out
