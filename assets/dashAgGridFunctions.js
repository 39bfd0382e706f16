/*
 * Functions dash-ag-grid options name as {"function": "..."} strings.
 *
 * The markets grid's pre-filters ("hide under N trades/min, M USDT/min, or spread over
 * S bps"): an external filter reading the thresholds the page last set
 * (window.__marketsPrefilter, from the PREFILTER store: assets/markets_board.js
 * `prefilter`). A row without a quote is not judged by the spread. The same rule in
 * Python: dashapp/pages/markets/marketsview.py passes_prefilters.
 */
(function () {
  "use strict";
  var fns = (window.dashAgGridFunctions = window.dashAgGridFunctions || {});

  function limits() {
    return window.__marketsPrefilter || {};
  }

  fns.marketsPrefilterOn = function () {
    var f = limits();
    return f.min_trades != null || f.min_volume != null || f.max_spread != null;
  };

  fns.marketsPrefilterPass = function (params) {
    var f = limits();
    var d = params.data || {};
    if (f.min_trades != null && (d.trades_per_min || 0) < f.min_trades) return false;
    if (f.min_volume != null && (d.volume_per_min || 0) < f.min_volume) return false;
    if (f.max_spread != null && d.spread_bps != null && d.spread_bps > f.max_spread) return false;
    return true;
  };
})();
