"""``python -m ingest.replay [FILE…]``: the replay exchange alone, until Ctrl-C or SIGTERM.

Point any Binance client at the printed ``ws://`` base; ``--help`` lists the flags,
including the fault switches (:class:`~ingest.replay.faults.FaultPlan`). Files holding
spot and futures recordings are served together: spot on the root paths, futures under
``/market`` (one example URL printed per market).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ingest.replay.faults import FaultPlan
from ingest.replay.protocol import PROFILES
from ingest.replay.server import ReplayServer
from ingest.replay.tapes import default_sample_files

log = logging.getLogger("ingest.replay")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.replay",
        description="Replay recorded Binance trades over a local Binance-compatible "
        "WebSocket server.",
    )
    parser.add_argument(
        "files", nargs="*", type=Path,
        help="recordings (jsonl, raw capture, trades CSV, Binance dump); "
        "default: the sample_data spot + futures BTCUSDT+ETHUSDT tapes of the "
        "overlapping window (--market: that market's bundled tapes only)",
    )
    parser.add_argument(
        "--market", choices=("spot", "perp", "futures"), default=None,
        help="market of recordings whose frames and file name do not show theirs "
        "(default spot); with no FILE: play only that market's bundled tapes",
    )
    wide = parser.add_argument_group(
        "wide tape (ingest/replay/wide.py; no FILE)")
    wide.add_argument(
        "--universe", type=int, default=0, metavar="N",
        help="play a wide tape of N instruments of --market (default futures): the real "
        "BTCUSDT/ETHUSDT recordings plus N-2 derived from them (heavy head, long tail)",
    )
    wide.add_argument("--minutes", type=float, default=None,
                      help="the wide tape's length (default: the recording's minutes)")
    wide.add_argument("--late-listings", type=int, default=0, metavar="K",
                      help="the last K instruments start trading mid-tape (exchangeInfo "
                      "lists them from then on)")
    wide.add_argument("--seed", type=int, default=0, help="the wide tape's seed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--speed", type=float, default=1.0,
        help="1 = real time, 10 = ten times faster, 0 = as fast as clients read",
    )
    parser.add_argument(
        "--loop", action="store_true", help="restart at the end (ids/times shifted)"
    )
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default=None,
        help="Binance limits and pings to imitate (default: futures with --market "
        "perp/futures, else spot)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="client messages/s before close 1008 (default: profile; 0 = off)",
    )
    parser.add_argument("--ping-interval", type=float, default=None)
    parser.add_argument("--ping-timeout", type=float, default=None)
    faults = parser.add_argument_group("faults (each fires once)")
    faults.add_argument("--drop-after", type=int, metavar="N")
    faults.add_argument("--skip", type=int, nargs=2, metavar=("N", "K"))
    faults.add_argument("--garbage", type=int, nargs=2, metavar=("N", "K"))
    faults.add_argument("--silence", type=float, nargs=2, metavar=("N", "SECONDS"))
    faults.add_argument("--shutdown-after", type=int, metavar="N")
    faults.add_argument("--drop-every", type=int, metavar="N",
                        help="close every connection after each N events")
    faults.add_argument("--duplicate", type=int, nargs=2, metavar=("N", "K"),
                        help="after event N resend the K events before it")
    faults.add_argument("--bad-id", type=int, nargs=2, metavar=("N", "D"),
                        help="after event N send a copy of it with its id + D")
    faults.add_argument("--future-time", type=int, nargs=2, metavar=("N", "MS"),
                        help="after event N send a copy with id + 1 and times + MS")
    parser.add_argument(
        "--rest-port", type=int, default=None,
        help="HTTP port of the REST back-fill endpoints (default: --port + 1, or a free "
        "port printed at start if that one is taken; 0 picks a free port)",
    )
    parser.add_argument("--no-rest", action="store_true", help="no REST endpoints")
    parser.add_argument(
        "--rest-weight-limit", type=int, default=None,
        help="REST request weight per minute before 429 (default: Binance's, "
        "6000 spot / 2400 futures; 0 = unlimited)",
    )
    parser.add_argument(
        "--max-lifetime", type=float, default=None, metavar="SECONDS",
        help="close every connection after this long (Binance: 24 h)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: serve until Ctrl-C or SIGTERM."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.universe and args.files:
        parser.error("--universe plays a generated tape: give no FILE")
    if args.universe and args.market is None:
        args.market = "futures"
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    plan = FaultPlan(
        drop_after=args.drop_after,
        skip=tuple(args.skip) if args.skip else None,
        garbage=tuple(args.garbage) if args.garbage else None,
        silence=(int(args.silence[0]), args.silence[1]) if args.silence else None,
        shutdown_after=args.shutdown_after,
        drop_every=args.drop_every,
        duplicate=tuple(args.duplicate) if args.duplicate else None,
        bad_id=tuple(args.bad_id) if args.bad_id else None,
        future_time=tuple(args.future_time) if args.future_time else None,
    )
    optional: dict[str, float | None] = {}
    if args.rate_limit is not None:
        optional["rate_limit"] = args.rate_limit or None
    if args.ping_interval is not None:
        optional["ping_interval"] = args.ping_interval or None
    if args.ping_timeout is not None:
        optional["ping_timeout"] = args.ping_timeout or None
    if args.rest_weight_limit is not None:
        optional["rest_weight_limit"] = args.rest_weight_limit or None
    rest_port = args.rest_port
    if rest_port is None:  # default --port + 1, or any free port if that one is taken
        rest_port = args.port + 1 if args.port else 0
    if args.profile is None:
        args.profile = "futures" if args.market in ("perp", "futures") else "spot"
    if args.universe:
        from ingest.replay.wide import wide_tape

        try:
            files = wide_tape(args.universe, market=args.market, seed=args.seed,
                              minutes=args.minutes, late_listings=args.late_listings)
        except ValueError as exc:
            parser.error(f"--universe: {exc}")
    else:
        files = args.files or default_sample_files(args.market)
    server = ReplayServer(
        files, host=args.host, port=args.port, speed=args.speed, loop=args.loop,
        profile=args.profile, faults=plan, rest=not args.no_rest, rest_port=rest_port,
        max_lifetime_s=args.max_lifetime, rest_port_fallback=args.rest_port is None,
        default_market=args.market, **optional,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("replay: signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.start()
    tape = server.tape
    kinds = "+".join(sorted({name.split("@", 1)[1] for name in server.streams}))
    if len(server.markets) == 1:
        prefix = "/market" if args.profile == "futures" else ""
        examples = f"{server.ws_base}{prefix}/stream?streams=" + "/".join(
            f"{s.lower()}@{tape.kind_of[s]}" for s in tape.symbols[:5]
        )
    else:
        examples = " and ".join(
            f"{m} {server.url(_example_kind(tape, m), market=m)}" for m in server.markets
        )
    print(
        f"{server.ws_base} replaying {len(tape)} events of {_names(tape.symbols)} "
        f"({kinds}) speed={'max' if not args.speed else args.speed} "
        f"loop={'on' if args.loop else 'off'} profile={args.profile} "
        f"markets={','.join(server.markets)}; try {examples}"
        + (f"; REST {server.rest_base}" if server.rest_base else ""),
        flush=True,
    )
    if server.rest is not None and server.rest.fell_back_from is not None:
        print(f"REST port {server.rest.fell_back_from} is taken: REST listens on "
              f"{server.rest_base} instead", flush=True)
    stop.wait()
    server.stop()
    return 0


def _names(symbols: Sequence[str]) -> str:
    """The symbols, or the first few and the count when there are many."""
    if len(symbols) <= 10:
        return ",".join(symbols)
    return ",".join(symbols[:5]) + f",... ({len(symbols)} instruments)"


def _example_kind(tape, market: str) -> str:
    kinds = {tape.kind_of[n] for n in tape.symbols if tape.instrument_of[n][0] == market}
    return "trade" if "trade" in kinds or not kinds else kinds.pop()


if __name__ == "__main__":
    raise SystemExit(main())
