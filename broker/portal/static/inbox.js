// Live inbox: listens for the portal's server-sent events and reloads the
// list of warnings when one arrives. Without JavaScript the page works as a
// plain page: reload it to see new warnings.
(function () {
  "use strict";
  var list = document.getElementById("inbox-list");
  if (!list || !window.EventSource) { return; }
  var live = document.getElementById("inbox-live");
  var after = list.getAttribute("data-after") || "";
  var source;

  function refresh() {
    fetch("/inbox", { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("inbox-list");
        var badge = doc.getElementById("unread");
        if (fresh) {
          list.innerHTML = fresh.innerHTML;
          after = fresh.getAttribute("data-after") || after;
          list.setAttribute("data-after", after);
        }
        var mine = document.getElementById("unread");
        if (badge && mine) { mine.textContent = badge.textContent; }
        if (live) { live.textContent = live.getAttribute("data-new") || ""; }
        connect();
      })
      .catch(function () { /* the next event tries again */ });
  }

  function connect() {
    if (source) { source.close(); }
    source = new EventSource("/inbox/events?after=" + encodeURIComponent(after));
    source.addEventListener("warning", refresh);
  }
  connect();
}());
