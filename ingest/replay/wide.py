"""Wide replay tapes: hundreds of instruments DERIVED from the two real recordings.

The bundled recordings hold two instruments per market (BTCUSDT, ETHUSDT). A desk
screens the whole market (300-400 USDⓈ-M perpetuals), so :func:`wide_tape` builds a
tape of ``n`` instruments named like Binance's USDT instruments (:data:`WIDE_SYMBOLS`,
real Binance symbol names listed by rough activity rank):

* rank 1 and 2 are the REAL bundled BTCUSDT and ETHUSDT tapes of the market,
  unchanged: ids, prices, quantities, times and key order as recorded (byte for byte);
* rank k >= 3 is DERIVED from a real tape (BTCUSDT for odd k, ETHUSDT for even k):
  each trade is kept with probability ``p_k = rate_k / rate_source`` (thinning), moved
  in time by a per-instrument offset (wrapped inside the tape window so every
  instrument plays over the same minutes), its price rescaled to the instrument's own
  level, given its own trend (``× exp(drift × t / window)``, drift uniform in ±5 %)
  and rounded to its tick (Binance-like decimal strings: futures with the
  instrument's price precision, spot with 8 decimals), its quantity scaled so the
  quote value per trade follows the rank, and its ids contiguous from an instrument's
  own base in the new time order. Derived prices are the source's path, rotated in
  time: at the wrap point (and at each pass seam with ``minutes``) the price jumps
  back, as a looped replay does.

Activity mix (a heavy head, a long tail; Zipf-like by rank)::

    trades/s of rank k      rate_k = rate_1 * k ** -1.1     (rate_1 = the real BTCUSDT's)
    quote value per trade   Q_k    = Q_1 * k ** -0.4        (Q_1 = the real BTCUSDT's mean)
    quote volume            ~ rate_k * Q_k ~ k ** -1.5

Rank 2 is the real ETHUSDT (its own rate, ~0.66 rate_1 on the futures tape). On the
futures tape (rate_1 = 62 trades/s over 5.7 min) 300 instruments play ~320 trades/s
(rank 3: 18/s, rank 10: 4.9/s, rank 100: 0.39/s, rank 300: 0.12/s): an hour of them
(``minutes=60``) is 1.13 M trade events. Spot (rate_1 = 31/s over 10.8 min) about
half. :func:`wide_mix` returns the plan (per instrument: source, keep probability,
offset, price level, tick, step, id base); ``docs/replay.md`` shows the figures.

``minutes``: the window the tape covers. The source tapes are repeated as loop passes
(``ingest.replay.loop``: times moved by duration + 1 s, ids continued without a
seam) until the window is full, then cut to it; the head instruments play their real
recording in the first pass. ``None``: one pass (the recording's own minutes).

``late_listings=k``: the last ``k`` instruments start trading mid-tape (their first
trade between 40 % and 60 % of the window); ``Tape.listed_ms`` holds their listing
time, so the replay's ``exchangeInfo`` lists them only once its clock reaches it (new
listings joining a running app, tested on loopback).

Book events: none (derived instruments have no book; the wide tape is trades only:
``--no-book`` changes nothing, the app subscribes bookTicker streams that stay quiet).

Deterministic for a seed (numpy's PCG64). Built with numpy and handed to the Tape
pre-sorted: 300 instruments for an hour (1.13 M events) in 14 s, ~950 MB peak RSS, on
the shared 2-core machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np

from ingest.replay.loop import PASS_PAUSE_MS
from ingest.replay.tapes import MARKETS, Tape, TapeEvent, default_sample_files, load_tape

#: Real Binance USDT symbol names (USDⓈ-M perpetuals, most also on spot), roughly by
#: activity. Names only: the derived instruments' trades come from the real BTC/ETH tapes.
WIDE_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT", "ADAUSDT",
    "SUIUSDT", "LINKUSDT", "AVAXUSDT", "LTCUSDT", "TRXUSDT", "DOTUSDT", "BCHUSDT",
    "WIFUSDT", "NEARUSDT", "ENAUSDT", "AAVEUSDT", "ORDIUSDT", "FILUSDT", "APTUSDT",
    "ARBUSDT", "OPUSDT", "TIAUSDT", "INJUSDT", "WLDUSDT", "SEIUSDT", "UNIUSDT",
    "ETCUSDT", "ATOMUSDT", "HBARUSDT", "TONUSDT", "ICPUSDT", "RUNEUSDT", "FETUSDT",
    "RENDERUSDT", "STXUSDT", "JUPUSDT", "PYTHUSDT", "TAOUSDT", "ONDOUSDT", "XLMUSDT",
    "CRVUSDT", "LDOUSDT", "MKRUSDT", "PENDLEUSDT", "GALAUSDT", "SANDUSDT", "MANAUSDT",
    "AXSUSDT", "APEUSDT", "DYDXUSDT", "EOSUSDT", "ALGOUSDT", "VETUSDT", "XTZUSDT",
    "THETAUSDT", "EGLDUSDT", "FLOWUSDT", "CHZUSDT", "GRTUSDT", "IMXUSDT", "SNXUSDT",
    "COMPUSDT", "1INCHUSDT", "ZECUSDT", "DASHUSDT", "XMRUSDT", "KAVAUSDT", "ZILUSDT",
    "ENJUSDT", "BATUSDT", "NEOUSDT", "QTUMUSDT", "IOTAUSDT", "ONTUSDT", "IOSTUSDT",
    "ZRXUSDT", "OMGUSDT", "ICXUSDT", "RVNUSDT", "SXPUSDT", "KSMUSDT", "YFIUSDT",
    "SUSHIUSDT", "STORJUSDT", "BALUSDT", "UMAUSDT", "BANDUSDT",
    "RSRUSDT", "TRBUSDT", "RLCUSDT", "OGNUSDT", "KNCUSDT", "ZENUSDT", "SKLUSDT",
    "GMXUSDT", "BLURUSDT", "JTOUSDT", "STRKUSDT", "WUSDT", "ZROUSDT", "ZKUSDT",
    "NOTUSDT", "IOUSDT", "ETHFIUSDT", "ALTUSDT", "MANTAUSDT", "DYMUSDT", "PIXELUSDT",
    "PORTALUSDT", "AEVOUSDT", "BOMEUSDT", "METISUSDT", "SAGAUSDT", "TNSRUSDT",
    "OMNIUSDT", "REZUSDT", "BBUSDT", "LISTAUSDT", "ZETAUSDT", "ACEUSDT", "NFPUSDT",
    "AIUSDT", "XAIUSDT", "ARKMUSDT", "CYBERUSDT", "ARUSDT", "MINAUSDT", "ROSEUSDT",
    "CELOUSDT", "CFXUSDT", "AGLDUSDT", "ANKRUSDT", "ASTRUSDT", "AUDIOUSDT", "BAKEUSDT",
    "BELUSDT", "BLZUSDT", "C98USDT", "CELRUSDT", "CHRUSDT", "COTIUSDT", "CTSIUSDT",
    "DENTUSDT", "DGBUSDT", "DUSKUSDT", "GTCUSDT", "HOTUSDT", "ARPAUSDT", "ALICEUSDT",
    "ATAUSDT", "LINAUSDT", "LPTUSDT", "LRCUSDT", "MASKUSDT", "MTLUSDT", "NKNUSDT",
    "OCEANUSDT", "ONEUSDT", "PEOPLEUSDT", "REEFUSDT", "SFPUSDT", "SPELLUSDT",
    "STMXUSDT", "TLMUSDT", "TUSDT", "WOOUSDT", "XEMUSDT", "XVSUSDT", "YGGUSDT",
    "KLAYUSDT", "IDUSDT", "JOEUSDT", "HOOKUSDT", "MAGICUSDT",
    "HIGHUSDT", "GMTUSDT", "GALUSDT", "LQTYUSDT",
    "SSVUSDT", "RDNTUSDT", "EDUUSDT", "IDEXUSDT", "UNFIUSDT",
    "FXSUSDT", "CKBUSDT", "TRUUSDT", "COMBOUSDT", "MAVUSDT", "XVGUSDT", "WAXPUSDT",
    "BNTUSDT", "BICOUSDT", "LEVERUSDT", "AMBUSDT", "STEEMUSDT", "NMRUSDT", "MOVRUSDT",
    "POLYXUSDT", "POWRUSDT", "GLMUSDT", "SLPUSDT", "KEYUSDT", "BONDUSDT", "ORBSUSDT",
    "RIFUSDT", "SYSUSDT", "VANRYUSDT", "ONGUSDT", "MOVEUSDT", "USTCUSDT", "BEAMXUSDT",
    "SUPERUSDT", "ILVUSDT", "NTRNUSDT", "MEMEUSDT", "TOKENUSDT", "ORCAUSDT", "ACHUSDT",
    "JASMYUSDT", "FLMUSDT", "KASUSDT", "ARKUSDT", "BIGTIMEUSDT", "WAVESUSDT", "STGUSDT", "LOOMUSDT", "MYROUSDT", "POLUSDT", "VOXELUSDT",
    "HIFIUSDT", "API3USDT", "AUCTIONUSDT", "FRONTUSDT",
    "TWTUSDT", "CVXUSDT", "PHBUSDT", "GASUSDT", "ZRCUSDT",
    "SCRUSDT", "EIGENUSDT", "CATIUSDT", "HMSTRUSDT", "DOGSUSDT", "BANANAUSDT",
    "RAREUSDT", "GUSDT", "SYNUSDT", "SUNUSDT", "DEGOUSDT", "QNTUSDT", "MBOXUSDT",
    "NULSUSDT", "HFTUSDT", "PERPUSDT", "DARUSDT", "FIDAUSDT", "LITUSDT", "ALPACAUSDT",
    "BSWUSDT", "BADGERUSDT", "OXTUSDT", "REIUSDT", "DODOUSDT", "CTKUSDT", "TROYUSDT", "RAYUSDT", "CVCUSDT", "QIUSDT", "PONDUSDT", "ARDRUSDT",
    "SNTUSDT", "LSKUSDT", "SCUSDT", "JSTUSDT", "VTHOUSDT",
    "WINUSDT", "STRAXUSDT", "BTTCUSDT", "DATAUSDT", "FIOUSDT", "RONINUSDT",
    "PROMUSDT", "ERNUSDT", "PENGUUSDT", "VIRTUALUSDT",
    "AIXBTUSDT", "GRASSUSDT", "DRIFTUSDT", "KAIAUSDT", "MEWUSDT", "POPCATUSDT",
    "GOATUSDT", "MOODENGUSDT", "PNUTUSDT", "ACTUSDT", "CETUSUSDT", "THEUSDT",
    "MORPHOUSDT", "USUALUSDT", "MEUSDT", "BIOUSDT", "COWUSDT", "SWELLUSDT",
    "SAFEUSDT", "SANTOSUSDT", "LAZIOUSDT", "PORTOUSDT", "ALPINEUSDT", "ASRUSDT",
    "ATMUSDT", "OGUSDT", "CITYUSDT", "JUVUSDT", "PSGUSDT", "ACMUSDT", "BARUSDT",
    "VELODROMEUSDT", "LUMIAUSDT", "SPXUSDT", "FARTCOINUSDT", "ZEREBROUSDT",
    "GRIFFAINUSDT", "AI16ZUSDT", "SONICUSDT", "SOLVUSDT", "TRUMPUSDT", "ANIMEUSDT",
    "VINEUSDT", "BERAUSDT", "LAYERUSDT", "KAITOUSDT", "IPUSDT", "SHELLUSDT",
    "REDUSDT", "GPSUSDT", "BMTUSDT", "MUBARAKUSDT", "FORMUSDT", "NILUSDT",
    "PARTIUSDT", "WALUSDT", "KERNELUSDT", "INITUSDT", "SIGNUSDT", "HYPERUSDT",
    "HAEDALUSDT", "SXTUSDT", "HUMAUSDT", "AUSDT", "SOPHUSDT", "RESOLVUSDT",
    "HOMEUSDT", "SAHARAUSDT", "NEWTUSDT", "ERAUSDT", "TREEUSDT", "TOWNSUSDT",
    "CUSDT", "BANKUSDT", "DOLOUSDT", "WLFIUSDT", "PUMPUSDT", "OPENUSDT", "XPLUSDT",
    "HEMIUSDT", "PLUMEUSDT", "MITOUSDT", "PROVEUSDT", "LINEAUSDT", "AVNTUSDT",
    "HOLOUSDT", "BARDUSDT", "ZKCUSDT", "SKYUSDT", "SOMIUSDT", "TUTUSDT",
    "BROCCOLI714USDT", "BANANAS31USDT", "EPICUSDT", "SYRUPUSDT", "KMNOUSDT",
    "DEXEUSDT", "COOKIEUSDT", "AEROUSDT", "VANAUSDT", "STOUSDT", "JELLYJELLYUSDT",
    "NXPCUSDT", "ZORAUSDT", "ALCHUSDT", "BUSDT", "SQDUSDT", "BIDUSDT", "ARCUSDT",
    "PIPPINUSDT", "MYXUSDT", "AWEUSDT", "CROSSUSDT", "AINUSDT", "SKATEUSDT",
    "ICNTUSDT", "MUSDT", "ASTERUSDT", "FFUSDT", "EDENUSDT", "2ZUSDT", "0GUSDT",
)

#: Zipf exponent of trades/s by rank (rate_k = rate_1 * k ** -ALPHA).
ALPHA = 1.1
#: Exponent of the mean quote value per trade by rank (Q_k = Q_1 * k ** -BETA).
BETA = 0.4
#: Price levels of derived instruments: log-uniform between these (USDT).
PRICE_LEVEL_RANGE = (1e-3, 500.0)
#: Significant digits a derived instrument's tick keeps at its price level.
PRICE_DIGITS = 5
#: A derived instrument's price path gets its own trend: × exp(drift × t / window),
#: drift uniform in ±DRIFT (a rotated path alone ends where it starts).
DRIFT = 0.05
#: Where late listings start trading, as fractions of the window.
LATE_WINDOW = (0.4, 0.6)
_HEAD = ("BTCUSDT", "ETHUSDT")


def _check_symbols() -> None:
    seen: set[str] = set()
    dup = [s for s in WIDE_SYMBOLS if s in seen or seen.add(s)]  # type: ignore[func-returns-value]
    if dup:
        raise AssertionError(f"WIDE_SYMBOLS repeats {dup}")


_check_symbols()
MAX_INSTRUMENTS = len(WIDE_SYMBOLS)


@dataclass(frozen=True)
class WideInstrument:
    """The plan of one wide-tape instrument (rank 1 and 2: the real recordings).

    ``keep_p`` = rate_k / rate_source (probability a source trade is kept),
    ``offset_ms`` = its time rotation inside the window, ``level`` = its price at the
    source tape's first price, ``tick``/``step`` as decimal strings (exchangeInfo's
    PRICE_FILTER tickSize / LOT_SIZE stepSize), ``qty_factor`` = quantity multiplier
    after the price rescale, ``id_base`` its first trade id, ``listed_ms`` the listing
    time (None: listed before the tape starts)."""

    rank: int
    symbol: str
    source: str
    derived: bool
    rate_per_s: float
    keep_p: float
    offset_ms: int
    level: float
    tick: str
    step: str
    qty_factor: float
    id_base: int
    listed_ms: int | None = None
    drift: float = 0.0


@dataclass(frozen=True)
class _Source:
    """A real tape's trades as arrays (one pass)."""

    events: tuple[TapeEvent, ...]
    t: np.ndarray  # T (ms)
    e_minus_t: np.ndarray  # E - T (ms)
    price: np.ndarray  # float
    qty: np.ndarray  # float
    maker: np.ndarray  # bool
    order_type: tuple[str, ...]  # X per trade (futures), "" spot
    first_id: int
    last_id: int
    recv_offset_ns: int  # median(T * 1e6 - recv_ns)

    @property
    def rate(self) -> float:
        span_s = max((int(self.t[-1]) - int(self.t[0])) / 1000.0, 1e-3)
        return len(self.t) / span_s

    @property
    def mean_quote(self) -> float:
        return float(np.mean(self.price * self.qty))


_SOURCE_CACHE: dict[str, tuple[Tape, dict[str, _Source]]] = {}


def _sources(market: str) -> tuple[Tape, dict[str, _Source]]:
    """The market's bundled real tape and its two instruments as arrays (cached)."""
    if market not in _SOURCE_CACHE:
        tape = load_tape(default_sample_files(market), default_market=market)
        out: dict[str, _Source] = {}
        for sym in _HEAD:
            evs = tuple(ev for ev in tape.events if ev.symbol == sym)
            data = [ev.data for ev in evs]
            t = np.fromiter((d["T"] for d in data), np.int64, len(data))
            e = np.fromiter((d["E"] for d in data), np.int64, len(data))
            recv = np.fromiter((ev.recv_ns for ev in evs), np.int64, len(evs))
            out[sym] = _Source(
                events=evs, t=t, e_minus_t=e - t,
                price=np.array([float(d["p"]) for d in data]),
                qty=np.array([float(d["q"]) for d in data]),
                maker=np.array([bool(d["m"]) for d in data]),
                order_type=tuple(d.get("X", "") for d in data),
                first_id=evs[0].trade_id, last_id=evs[-1].trade_id,
                recv_offset_ns=int(np.median(t * 1_000_000 - recv)),
            )
        _SOURCE_CACHE[market] = (tape, out)
    return _SOURCE_CACHE[market]


def _market(market: str) -> str:
    market = "perp" if market in ("futures", "perp") else market
    if market not in MARKETS:
        raise ValueError(f"invalid market {market!r}: expected spot or perp (futures)")
    return market


def _decimal_text(value: float) -> str:
    """A power of ten as futures filters write it: ``0.001``, ``1``, ``10``."""
    return format(Decimal(repr(value)).normalize(), "f")


def _window_ms(tape: Tape, minutes: float | None) -> int:
    if minutes is None:
        return tape.duration_ms + 1
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    return int(round(minutes * 60_000))


def wide_mix(
    n: int, *, market: str = "perp", seed: int = 0, minutes: float | None = None,
    late_listings: int = 0,
) -> tuple[WideInstrument, ...]:
    """The plan of :func:`wide_tape` (same arguments): one :class:`WideInstrument` per
    rank, the activity mix of the module docstring."""
    market = _market(market)
    if type(n) is not int or not 1 <= n <= MAX_INSTRUMENTS:
        raise ValueError(f"n must be an int in 1..{MAX_INSTRUMENTS}, got {n!r}")
    if type(late_listings) is not int or not 0 <= late_listings <= max(n - 2, 0):
        raise ValueError(
            f"late_listings must be an int in 0..{max(n - 2, 0)} (the derived "
            f"instruments), got {late_listings!r}")
    tape, src = _sources(market)
    window = _window_ms(tape, minutes)
    t0 = tape.first_time_ms
    rng = np.random.default_rng([seed, 0 if market == "spot" else 1])
    rate_1 = src["BTCUSDT"].rate
    q_1 = src["BTCUSDT"].mean_quote
    lo, hi = (math.log10(x) for x in PRICE_LEVEL_RANGE)
    plan: list[WideInstrument] = []
    for rank in range(1, n + 1):
        sym = WIDE_SYMBOLS[rank - 1]
        if rank <= 2:
            s = src[sym]
            plan.append(WideInstrument(
                rank, sym, sym, False, s.rate, 1.0, 0, float(s.price[0]),
                _tick_of(s.events, "p"), _tick_of(s.events, "q"), 1.0, s.first_id))
            continue
        source = "BTCUSDT" if rank % 2 else "ETHUSDT"
        s = src[source]
        rate = rate_1 * rank ** -ALPHA
        keep = min(1.0, rate / s.rate)
        offset = int(rng.integers(0, window))
        level = float(10 ** rng.uniform(lo, hi))
        drift = float(rng.uniform(-DRIFT, DRIFT))
        tick = 10.0 ** (math.floor(math.log10(level)) - (PRICE_DIGITS - 1))
        tick = max(tick, 1e-8)
        quote = q_1 * rank ** -BETA  # target mean quote value per trade
        # q' = q_src * p_src / p' * factor, mean(p' q') = quote  =>  factor:
        qty_factor = quote / s.mean_quote
        typical_qty = quote / level
        step = 10.0 ** (math.floor(math.log10(typical_qty)) - 2)
        step = min(max(step, 1e-8 if market == "spot" else 1e-3), 1.0)
        base = int(rng.integers(10**7, 3 * 10**9))  # ids are per instrument, as on Binance
        plan.append(WideInstrument(
            rank, sym, source, True, rate, keep, offset, level,
            _decimal_text(tick), _decimal_text(step), qty_factor, base, drift=drift))
    if late_listings:
        a, b = LATE_WINDOW
        late = plan[n - late_listings:]
        for i, inst in enumerate(late):
            frac = a + (b - a) * (i + 1) / (late_listings + 1)
            plan[inst.rank - 1] = replace(inst, listed_ms=t0 + int(frac * window))
    return tuple(plan)


def _tick_of(events: tuple[TapeEvent, ...], key: str) -> str:
    """The smallest decimal place any of the recorded values uses (the tick or step
    of a real tape, e.g. ``"61800.30"`` → 0.1 when no price needs 2 decimals)."""
    places = 0
    for ev in events:
        text = ev.data[key]
        dot = text.find(".")
        if dot >= 0:
            frac = text[dot + 1:].rstrip("0")
            if len(frac) > places:
                places = len(frac)
    return _decimal_text(10.0 ** -places) if places else "1"


def wide_tape(
    n: int, *, market: str = "perp", seed: int = 0, minutes: float | None = None,
    late_listings: int = 0,
) -> Tape:
    """A tape of ``n`` instruments (module docstring): the real BTCUSDT/ETHUSDT
    recordings of ``market`` ("perp"/"futures" or "spot") as ranks 1-2 and ``n - 2``
    instruments derived from them, deterministic for ``seed``."""
    market = _market(market)
    plan = wide_mix(n, market=market, seed=seed, minutes=minutes,
                    late_listings=late_listings)
    tape, src = _sources(market)
    window = _window_ms(tape, minutes)
    t0 = tape.first_time_ms
    rng = np.random.default_rng([seed, 2 if market == "spot" else 3])
    pass_ms = tape.duration_ms + PASS_PAUSE_MS
    passes = max(1, math.ceil(window / pass_ms))
    per_inst: list[list[TapeEvent]] = []
    hints: dict[tuple[str, str], dict] = {}
    for inst in plan:
        hints[(market, inst.symbol)] = {
            "tick": inst.tick, "step": inst.step, "listed_ms": inst.listed_ms}
        if inst.derived:
            per_inst.append(_derived_events(inst, src[inst.source], market, t0, window,
                                            passes, pass_ms, rng))
        else:
            per_inst.append(_head_events(src[inst.symbol], t0, window, passes, pass_ms))
    events = _merge(per_inst)
    return Tape(events, source_files=[str(p) for p in default_sample_files(market)],
                presorted=True, listings=hints)


def _head_events(s: _Source, t0: int, window: int, passes: int, pass_ms: int
                 ) -> list[TapeEvent]:
    """The real recording (pass 0, unchanged), repeated as loop passes to fill the
    window (times + pass × (duration + 1 s), ids continued)."""
    out = [ev for ev in s.events if ev.time_ms - t0 < window]
    span = s.last_id - s.first_id + 1
    for k in range(1, passes):
        shift = k * pass_ms
        for ev in s.events:
            if ev.time_ms + shift - t0 >= window:
                break
            d = dict(ev.data)
            d["T"] += shift
            d["E"] += shift
            d["t"] += k * span
            out.append(TapeEvent(ev.recv_ns + shift * 1_000_000, ev.symbol, ev.kind,
                                 ev.time_ms + shift, d["t"], d, ev.market,
                                 ev.order_ms + shift if ev.order_ms >= 0 else -1))
    return out


def _derived_events(
    inst: WideInstrument, s: _Source, market: str, t0: int, window: int, passes: int,
    pass_ms: int, rng: np.random.Generator,
) -> list[TapeEvent]:
    """Thin, rotate, rescale and renumber one source tape for ``inst``."""
    m = len(s.t)
    rel = np.concatenate([s.t - t0 + k * pass_ms for k in range(passes)])
    idx = np.tile(np.arange(m), passes)
    keep = (rng.random(len(rel)) < inst.keep_p) & (rel < window)
    rel, idx = rel[keep], idx[keep]
    rel = (rel + inst.offset_ms) % window
    order = np.argsort(rel, kind="stable")
    rel, idx = rel[order], idx[order]
    if inst.listed_ms is not None:
        after = rel >= inst.listed_ms - t0
        rel, idx = rel[after], idx[after]
    t = rel + t0
    e = t + s.e_minus_t[idx]
    scale = inst.level / float(s.price[0])
    tick = float(inst.tick)
    trend = np.exp(inst.drift * (rel / window))
    ticks = np.maximum(np.rint(s.price[idx] * scale * trend / tick), 1).astype(np.int64)
    step = float(inst.step)
    # quote value follows the rank: q' = q * (p_src / p') * qty_factor
    qty = s.qty[idx] * s.price[idx] * inst.qty_factor / (ticks * tick)
    steps = np.maximum(np.rint(qty / step), 1).astype(np.int64)
    if market == "spot":
        p_dec = q_dec = 8
    else:
        p_dec = max(0, -Decimal(inst.tick).normalize().as_tuple().exponent)
        q_dec = max(0, -Decimal(inst.step).normalize().as_tuple().exponent)
    prices = _format_units(ticks, inst.tick, p_dec)
    qtys = _format_units(steps, inst.step, q_dec)
    recv = t * 1_000_000 - s.recv_offset_ns
    maker = s.maker[idx].tolist()
    sym = inst.symbol
    out: list[TapeEvent] = []
    base = inst.id_base
    t_l, e_l, recv_l = t.tolist(), e.tolist(), recv.tolist()
    if market == "spot":
        for i in range(len(t_l)):
            tid = base + i
            d = {"e": "trade", "E": e_l[i], "s": sym, "t": tid, "p": prices[i],
                 "q": qtys[i], "T": t_l[i], "m": maker[i], "M": True}
            out.append(TapeEvent(recv_l[i], sym, "trade", t_l[i], tid, d, "spot", t_l[i]))
    else:
        xs = s.order_type
        idx_l = idx.tolist()
        for i in range(len(t_l)):
            tid = base + i
            d = {"e": "trade", "E": e_l[i], "T": t_l[i], "s": sym, "t": tid,
                 "p": prices[i], "q": qtys[i], "X": xs[idx_l[i]], "m": maker[i]}
            out.append(TapeEvent(recv_l[i], sym, "trade", t_l[i], tid, d, "perp", t_l[i]))
    return out


def _format_units(units: np.ndarray, unit: str, decimals: int) -> list[str]:
    """``units × unit`` as exact decimal strings with ``decimals`` places (integer
    arithmetic, no float rounding: 12345 × 0.0001 → ``"1.2345"``)."""
    exp = -Decimal(unit).normalize().as_tuple().exponent  # places of the unit
    mult = int(Decimal(unit).scaleb(max(exp, 0)))  # unit = mult × 10**-exp
    if exp <= 0:  # unit >= 1
        return [f"{u * mult}" + ("." + "0" * decimals if decimals else "")
                for u in units.tolist()]
    scale = 10 ** exp
    pad = decimals - exp
    out = []
    for u in (units * mult).tolist():
        whole, frac = divmod(u, scale)
        out.append(f"{whole}.{frac:0{exp}d}" + "0" * pad)
    return out


def _merge(per_inst: list[list[TapeEvent]]) -> list[TapeEvent]:
    """All instruments' events in the Tape's order (``tapes._sort_key``: order time,
    receive time, symbol, then id; one market, one kind) by one numpy lexsort."""
    flat = [ev for evs in per_inst for ev in evs]
    if not flat:
        return flat
    sym_rank = {s: i for i, s in enumerate(sorted({evs[0].symbol for evs in per_inst
                                                   if evs}))}
    n = len(flat)
    order = np.fromiter(
        (ev.order_ms if ev.order_ms >= 0 else ev.time_ms for ev in flat), np.int64, n)
    recv = np.fromiter((ev.recv_ns for ev in flat), np.int64, n)
    sym = np.fromiter((sym_rank[ev.symbol] for ev in flat), np.int64, n)
    tid = np.fromiter((ev.trade_id for ev in flat), np.int64, n)
    return [flat[i] for i in np.lexsort((tid, sym, recv, order)).tolist()]
