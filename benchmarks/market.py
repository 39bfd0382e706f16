"""The whole market on one machine (issue #19): memory, restart, an hour of 300, the
markets refresh and the market-wide screen, in one run.

``python -m benchmarks.market [--quick] [--only memory,ingest,board,screen]``

Each section lives in its own module and runs its heavy parts in subprocesses, so
the RSS it reports is the app's, not this script's:

* ``memory`` (:mod:`benchmarks._market_memory`): RSS of the ingest process at 5 and
  300 idle instruments (feed unreachable, nothing traded) and the cold restart of 10
  liquid instruments holding a day of 1 s bars and their ring ticks, from process start
  to the first served pair. Goals: +150 MB at most for 300 idle over 5; 3 s.
* ``ingest`` (:mod:`benchmarks._market_ingest`): an hour of 300 instruments at a
  realistic activity mix (a heavy head, a long tail; the module says which) played by
  the replay exchange, ingest p99 receive-to-ring, zero loss, RSS. Goal 2 GB.
* ``board`` (:mod:`benchmarks._market_board`): the markets page refresh at 300
  instruments: server time and bytes per 500 ms refresh. Goals 10 ms, 10 KB.
* ``screen`` (:mod:`benchmarks._market_screen`): the top-50 and top-100 market-wide
  screens on a day of 1 m bars against a per-pair statsmodels ``coint`` loop, with the
  ratio. Goal 10 s for the top-50.

Output: one table per section, then as the LAST line one JSON object
``{"quick": …, "sections": {name: figures}, "seconds": {name: wall s}, "load_1m": …}``.
``--quick`` runs every section in its short form (under a minute each).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

#: section name -> (module, title); run in this order
SECTIONS: dict[str, tuple[str, str]] = {
    "memory": ("benchmarks._market_memory", "memory: idle instruments and a cold restart"),
    "ingest": ("benchmarks._market_ingest", "an hour of 300 instruments"),
    "board": ("benchmarks._market_board", "markets page refresh at 300 instruments"),
    "screen": ("benchmarks._market_screen", "market-wide screen vs a statsmodels loop"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.market", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short forms of every section (< 1 min each)")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="comma-separated sections to run (default: all of %(default)s)")
    a = p.parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown or not only:
        p.error(f"--only: unknown section(s) {unknown or only}; choose from {', '.join(SECTIONS)}")
    a.only = only
    return a


def print_section(title: str, rows: list[tuple[str, str]], seconds: float) -> None:
    """One readable table: a title line, then ``label  value`` rows."""
    print(f"\n== {title} ({seconds:.1f} s)")
    width = max((len(label) for label, _ in rows), default=0)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    figures: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    print(f"whole-market benchmark ({'quick' if a.quick else 'full'}); machine: "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
    for name in a.only:
        module, title = SECTIONS[name]
        started = time.perf_counter()
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows, figs = importlib.import_module(module).run(quick=a.quick)
        seconds[name] = round(time.perf_counter() - started, 1)
        figures[name] = figs
        print_section(title, rows, seconds[name])
    print(json.dumps({"quick": a.quick, "sections": figures, "seconds": seconds,
                      "load_1m": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
