/*
 * Says in the page when a chosen or dropped file is over the upload cap.
 *
 * dcc.Upload's max_size makes react-dropzone drop such a file without firing any
 * callback (plotly/dash#2638), so the user would see nothing happen. Any element with
 * data-max-bytes and data-report-to gets its file inputs and drops checked here; the
 * element named by data-report-to (this script is its only writer) gets the message,
 * or is cleared when every file is within the cap. The server's own cap still applies.
 */
(function () {
  "use strict";
  function mb(n) {
    return (n / 1048576).toFixed(1) + " MB";
  }
  function report(root, files) {
    var setProps = window.dash_clientside && window.dash_clientside.set_props;
    if (!setProps || !files) return;
    var cap = Number(root.getAttribute("data-max-bytes"));
    var big = Array.prototype.filter.call(files, function (f) {
      return f.size > cap;
    });
    var text = big.length
      ? "Not uploaded, over the cap of " + mb(cap) + " per file: " +
        big.map(function (f) { return f.name + " (" + mb(f.size) + ")"; }).join(", ") +
        ". Split the file (e.g. one month per file) or use POST /api/upload."
      : null;
    setProps(root.getAttribute("data-report-to"), { children: text });
  }
  function capped(target) {
    return target && target.closest ? target.closest("[data-max-bytes]") : null;
  }
  document.addEventListener("change", function (e) {
    var root = capped(e.target);
    if (root && e.target.files) report(root, e.target.files);
  }, true);
  document.addEventListener("drop", function (e) {
    var root = capped(e.target);
    if (root && e.dataTransfer) report(root, e.dataTransfer.files);
  }, true);
})();
