/*
 * The markets board in the browser (dashapp/pages/markets/page.py, dashapp/board.py).
 *
 * The server sends, every 500 ms, either the whole board ({v, full, names, rows}) or the
 * cells changed since the version this tab holds ({v, from, set: {field: [i, value, ...]},
 * add}), plus sparkline updates for the rows on screen ({spark: {name: [ts, full, close...]},
 * tf}). `apply` merges that into the rows kept here (whole rows: a grid transaction
 * replaces a row's data) and returns
 *   [rowData (full message only), rowTransaction {update, add}, client store, grid note];
 * the client store says which version and which visible sparklines the tab now holds,
 * and the next request sends it back. A diff whose `from` is not the version held is
 * dropped (a reply to an older request): the next one is computed from the right version.
 */
(function () {
  "use strict";
  var SPARK_BARS = 60;
  var state = { v: null, names: [], rows: {}, sparkTs: {}, tf: null };

  function api(gridId) {
    try {
      return window.dash_ag_grid.getApi(gridId);
    } catch (e) {
      return null;
    }
  }

  function visibleNames(grid) {
    if (!grid) return [];
    try {
      return grid.getRenderedNodes().map(function (n) { return n.id; });
    } catch (e) {
      return [];
    }
  }

  function note(grid) {
    var total = state.names.length;
    if (!grid || !total) return window.dash_clientside.no_update;
    var shown = grid.getDisplayedRowCount();
    return shown === total ? "all " + total + " instruments" : shown + " of " + total + " instruments";
  }

  function apply(msg, gridId) {
    var nu = window.dash_clientside.no_update;
    if (!msg) return [nu, nu, nu, nu];
    var touched = {};
    var added = [];
    var full = !!msg.full;
    if (full) {
      var old = state.rows;
      var keepSparks = state.tf === msg.tf;
      state = { v: msg.v, names: msg.names.slice(), rows: {}, sparkTs: keepSparks ? state.sparkTs : {}, tf: msg.tf };
      msg.rows.forEach(function (r) {
        var row = Object.assign({}, r);
        if (keepSparks && old[r.name] && old[r.name].spark) row.spark = old[r.name].spark;
        state.rows[r.name] = row;
      });
    } else if (msg.from !== state.v) {
      var grid0 = api(gridId);
      return [nu, nu, client(grid0), nu];
    } else {
      Object.keys(msg.set || {}).forEach(function (field) {
        var cells = msg.set[field];
        for (var k = 0; k < cells.length; k += 2) {
          var name = state.names[cells[k]];
          var row = state.rows[name];
          if (!row) continue;
          row = state.rows[name] = Object.assign({}, row);
          row[field] = cells[k + 1];
          touched[name] = true;
        }
      });
      (msg.add || []).forEach(function (r) {
        state.names.push(r.name);
        state.rows[r.name] = Object.assign({}, r);
        added.push(state.rows[r.name]);
      });
      state.v = msg.v;
    }
    if (msg.tf !== state.tf) {  // another timeframe: every line held is wrong now
      Object.keys(state.sparkTs).forEach(function (name) {
        if (state.rows[name]) {
          state.rows[name] = Object.assign({}, state.rows[name], { spark: null });
          touched[name] = true;
        }
      });
      state.sparkTs = {};
      state.tf = msg.tf;
    }
    Object.keys(msg.spark || {}).forEach(function (name) {
      var s = msg.spark[name];
      var row = state.rows[name];
      if (!row) return;
      var closes = s.slice(2);
      var line = s[1] ? closes : (row.spark || []).concat(closes).slice(-SPARK_BARS);
      state.rows[name] = Object.assign({}, row, { spark: line });
      state.sparkTs[name] = s[0];
      touched[name] = true;
    });
    var grid = api(gridId);
    var rowData = nu;
    var tx = nu;
    if (full) {
      rowData = state.names.map(function (n) { return state.rows[n]; });
    } else {
      var update = Object.keys(touched).filter(function (n) { return !added.includes(state.rows[n]); })
        .map(function (n) { return state.rows[n]; });
      if (update.length || added.length) tx = { update: update, add: added, async: false };
    }
    return [rowData, tx, client(grid), note(grid)];
  }

  function client(grid) {
    var vis = {};
    visibleNames(grid).forEach(function (n) {
      if (n in state.rows) vis[n] = n in state.sparkTs ? state.sparkTs[n] : null;
    });
    return { v: state.v, tf: state.tf, vis: vis };
  }

  function quickFilter(text, gridId) {
    var grid = api(gridId);
    if (grid) grid.setGridOption("quickFilterText", text || "");
    return text || "";
  }

  // the pre-filters' thresholds (PREFILTER store) -> the grid's external filter
  // (assets/dashAgGridFunctions.js); a grid not made yet reads them when it is
  function prefilter(limits, gridId) {
    window.__marketsPrefilter = limits || {};
    var grid = api(gridId);
    if (grid) grid.onFilterChanged();
    return limits || {};
  }

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.markets = { apply: apply, quickFilter: quickFilter, prefilter: prefilter };
})();
