// The status page's live updates (page.py): one server-sent event stream, no polling. Each
// `page` event carries the new <main>; ages ("12 s") are kept current locally.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var conn = document.getElementById("conn");
  var source = null;
  function ago(s) {
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return Math.round(s / 86400) + " d";
  }
  function ages() {
    var now = Date.now();
    var all = main.querySelectorAll("[data-since]");
    for (var i = 0; i < all.length; i++) {
      all[i].textContent = ago(Math.max(0, (now - Date.parse(all[i].dataset.since)) / 1000));
    }
  }
  function show(on, text) {
    conn.className = on ? "on" : "off";
    conn.textContent = text;
  }
  function connect() {
    source = new EventSource("events");
    source.onopen = function () { show(true, "live"); };
    source.addEventListener("page", function (e) {
      main.innerHTML = e.data;
      ages();
      show(true, "live");
      window.pageUpdatedAt = Date.now();
    });
    source.onerror = function () {
      show(false, "reconnecting…");
      if (source && source.readyState === EventSource.CLOSED) {
        // the daemon answered with an error (e.g. it is restarting): try again ourselves
        source.close();
        source = null;
        setTimeout(function () { if (!source && !document.hidden) connect(); }, 1000);
      }
    };
  }
  // A hidden tab lets its stream go (a browser keeps at most 6 connections to one host, and
  // each open stream holds one) and takes it up again, with a fresh page, when shown.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden && source) {
      source.close();
      source = null;
      show(false, "paused");
    } else if (!document.hidden && !source) {
      connect();
    }
  });
  connect();
  setInterval(ages, 1000);
})();
