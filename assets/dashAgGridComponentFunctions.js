/*
 * Cell renderers for dash-ag-grid (looked up by name in `cellRenderer`).
 *
 * Sparkline (markets board): an inline SVG polyline of the row's `spark` closes (the last
 * 60 bars at the page's timeframe), green when the last close is at or above the first,
 * red below. Only rows on screen are rendered by the grid, and only they get closes.
 */
(function () {
  "use strict";
  var fns = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});
  var W = 130;
  var H = 22;

  fns.Sparkline = function (props) {
    var v = props.value;
    var h = window.React.createElement;
    if (!v || v.length < 2) return h("span", { className: "spark-empty text-muted" }, "");
    var lo = Infinity;
    var hi = -Infinity;
    v.forEach(function (x) {
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    });
    var span = hi - lo || 1;
    var step = (W - 2) / (v.length - 1);
    var pts = v.map(function (x, i) {
      return (1 + i * step).toFixed(1) + "," + (H - 2 - ((x - lo) / span) * (H - 4)).toFixed(1);
    }).join(" ");
    var up = v[v.length - 1] >= v[0];
    return h(
      "svg",
      { width: W, height: H, className: "spark-svg", "data-n": v.length },
      h("polyline", { points: pts, fill: "none", stroke: up ? "#00bc8c" : "#e74c3c", strokeWidth: 1.3 })
    );
  };
})();
