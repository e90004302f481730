// filmflow review: keyboard shortcuts and the release status poller (no inline scripts: CSP script-src 'self').
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }
  function go(id) { var a = document.getElementById(id); if (a && a.href) { window.location.href = a.href; } }

  // queue: row selection with j/k, Enter opens, click opens
  var rows = Array.prototype.slice.call(document.querySelectorAll("#queue tbody tr[data-href]"));
  var sel = rows.length ? 0 : -1;
  function select(i) {
    if (!rows.length) { return; }
    sel = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, j) { r.classList.toggle("selected", j === sel); });
    rows[sel].scrollIntoView({ block: "nearest" });
  }
  rows.forEach(function (r, i) {
    r.addEventListener("click", function (e) { if (e.target.tagName !== "A") { window.location.href = r.dataset.href; } });
  });
  if (rows.length) { select(0); }

  // manifest values: click to copy into the field
  Array.prototype.forEach.call(document.querySelectorAll("button.fill"), function (b) {
    b.addEventListener("click", function () {
      var t = document.getElementById(b.dataset.target);
      if (t) { t.value = b.dataset.value; t.focus(); }
    });
  });

  // filters submit on change
  ["filter-batch", "filter-code"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el) { el.addEventListener("change", function () { el.form.submit(); }); }
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === "Escape" && typing(e)) { e.target.blur(); return; }
    if (typing(e)) { return; }
    var k = e.key;
    if (rows.length) {
      if (k === "j") { select(sel + 1); e.preventDefault(); return; }
      if (k === "k") { select(sel - 1); e.preventDefault(); return; }
      if (k === "Enter" && sel >= 0) { window.location.href = rows[sel].dataset.href; return; }
      if (k === "/") { var f = document.getElementById("filter-batch"); if (f) { f.focus(); e.preventDefault(); } return; }
    }
    if (k === "j") { go("next"); return; }
    if (k === "k") { go("prev"); return; }
    if (k === "/") { var first = document.querySelector("#approve-form input:not([type=hidden])"); if (first) { first.focus(); e.preventDefault(); } return; }
    if (k === "a") { var ab = document.getElementById("approve-button"); if (ab) { e.preventDefault(); ab.click(); } return; }
    if (k === "r") { var rr = document.getElementById("reject-reason"); if (rr) { e.preventDefault(); rr.focus(); } return; }
    if (k === "p") { var pb = document.getElementById("reprocess-button"); if (pb) { e.preventDefault(); pb.click(); } return; }
    if (k === "z") { go("zoom-processed"); return; }
    if (k === "?") { var s = document.getElementById("shortcuts"); if (s) { s.open = !s.open; } }
  });

  // release status: poll while a run is going, then reload to show the new queue
  var status = document.getElementById("release-status");
  if (status && status.dataset.running === "1") {
    var timer = setInterval(function () {
      fetch("/api/release", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (s) {
        if (!s.running) { clearInterval(timer); window.location.reload(); }
      }).catch(function () { clearInterval(timer); });
    }, 1500);
  }
})();
