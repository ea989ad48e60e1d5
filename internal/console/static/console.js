// Live updates: the worker says "change" on /live whenever the audit index
// grows; a page marked data-live then reloads its content in place. No
// framework, nothing from elsewhere.
(function () {
  "use strict";
  var main = document.getElementById("content");
  if (!main || !main.hasAttribute("data-live") || !window.EventSource) return;
  var dot = document.querySelector(".live-dot");
  var pending = null;
  function refresh() {
    pending = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("content");
        if (!fresh) return;
        var focused = document.activeElement && document.activeElement.closest("form");
        if (focused) return; // someone is typing in a filter: leave the page alone
        main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
        main.setAttribute("data-refreshed", String(Date.now()));
        dot = document.querySelector(".live-dot");
        if (dot) dot.classList.add("on");
      })
      .catch(function () {});
  }
  var es = new EventSource("/live");
  es.addEventListener("hello", function () { if (dot) dot.classList.add("on"); });
  es.addEventListener("change", function () {
    if (!pending) pending = setTimeout(refresh, 300);
  });
  es.onerror = function () { if (dot) dot.classList.remove("on"); };
})();
