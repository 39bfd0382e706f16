/*
 * Browser notifications of alert events, once per event across the app's open tabs.
 *
 * Every tab's shell polls the events after its own cursor (alert_modal.poll_events, the
 * 1 s interval that also drives the toasts: no extra polling here) and hands the new
 * ones, [{id, title, body}], to dash_clientside.alerts.notify. With several tabs open
 * every tab sees every event, so each event id is CLAIMED before it is shown: under the
 * Web Locks API lock "alerts-notify" (one holder at a time across the tabs of this
 * origin) a tab reads the claimed ids from localStorage, keeps the ids nobody claimed,
 * writes them back and only then shows them. Read-check-write under one lock is a
 * compare-and-set, so two tabs never both show an event. Without Web Locks (an old
 * browser) the same read-check-write runs unlocked, and the notification's tag (the
 * event id) still makes the browser replace rather than stack a rare duplicate.
 *
 * Opt-in: the "Browser notifications" switch on the alerts page asks the permission
 * (Notification.requestPermission) and stores the choice in localStorage
 * (dcc.Store alerts-notify-enabled), which every tab reads.
 */
(function () {
  "use strict";
  var KEY = "alerts-notified-ids"; // JSON list of the last MAX_IDS claimed event ids
  var MAX_IDS = 500;
  var MAX_SHOWN = 3; // per poll: a burst shows its newest three (the toasts show them too)

  function supported() {
    return typeof window.Notification === "function";
  }

  function permission() {
    return supported() ? window.Notification.permission : "unsupported";
  }

  function readClaimed() {
    try {
      var ids = JSON.parse(window.localStorage.getItem(KEY) || "[]");
      return Array.isArray(ids) ? ids : [];
    } catch (e) {
      return [];
    }
  }

  /* The notes no tab has claimed yet, now claimed by this one (call under the lock). */
  function claim(notes) {
    var claimed = readClaimed();
    var seen = {};
    claimed.forEach(function (id) { seen[id] = true; });
    var fresh = notes.filter(function (n) { return !seen[n.id]; });
    if (fresh.length) {
      var all = claimed.concat(fresh.map(function (n) { return n.id; }));
      window.localStorage.setItem(KEY, JSON.stringify(all.slice(-MAX_IDS)));
    }
    return fresh;
  }

  function show(notes) {
    notes.slice(-MAX_SHOWN).forEach(function (n) {
      try {
        new window.Notification(n.title, { body: n.body, tag: "alert-event-" + n.id });
      } catch (e) { /* e.g. Android Chrome wants a service worker: the toast is enough */ }
    });
    return notes.length;
  }

  function claimAndShow(notes) {
    if (navigator.locks && navigator.locks.request) {
      return navigator.locks.request("alerts-notify", function () {
        return show(claim(notes));
      });
    }
    return Promise.resolve(show(claim(notes)));
  }

  function stateText(p) {
    return {
      granted: "notifications allowed",
      denied: "notifications blocked in this browser's site settings",
      "default": "the browser will ask for permission",
      unsupported: "this browser has no notifications",
    }[p] || p;
  }

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.alerts = {
    /* Store alerts-notify (new events of this tab) -> notifications; returns "". */
    notify: function (notes, enabled) {
      if (!enabled || !Array.isArray(notes) || !notes.length || permission() !== "granted") {
        return "";
      }
      var valid = notes.filter(function (n) {
        return n && typeof n.id === "number" && typeof n.title === "string";
      });
      return claimAndShow(valid).then(function () { return ""; }, function () { return ""; });
    },
    /* The alerts page switch: ask the permission when turned on; [enabled, state text]. */
    toggle: function (on) {
      if (!on) {
        return [false, "off"];
      }
      if (!supported()) {
        return [false, stateText("unsupported")];
      }
      if (permission() !== "default") {
        return [permission() === "granted", stateText(permission())];
      }
      return window.Notification.requestPermission().then(function (p) {
        return [p === "granted", stateText(p)];
      }, function () {
        return [false, stateText(permission())];
      });
    },
  };
  window.alertNotifications = { claim: claim, permission: permission, KEY: KEY };
})();
