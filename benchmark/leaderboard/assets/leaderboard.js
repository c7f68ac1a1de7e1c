// matteralign leaderboard page behaviour; inlined into index.html by benchmark/leaderboard/html.py.
// Everything it works on is already in the DOM (rendered and escaped server-side): sorting reads each cell's
// data-v (a number, or empty for "no value", which always sorts last), filtering reads each row's data-* keys.
(function () {
  "use strict";
  var doc = document;

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return null;
    var raw = cell.getAttribute("data-v");
    if (raw === null) raw = cell.textContent.trim();
    if (raw === "") return null;
    return raw;
  }

  function compare(a, b, numeric) {
    if (numeric) return parseFloat(a) - parseFloat(b);
    return a.localeCompare(b, undefined, {numeric: true, sensitivity: "base"});
  }

  // Sort the header's table by its column. First click: the better end first (data-better higher/lower), else
  // ascending; each further click flips. Rows without a value stay at the bottom either way.
  function sortBy(th) {
    var table = th.closest("table");
    var body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var current = th.getAttribute("aria-sort");
    var descending;
    if (current === "descending") descending = false;
    else if (current === "ascending") descending = true;
    else descending = th.getAttribute("data-better") === "higher";
    var numeric = th.getAttribute("data-type") === "num";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (ra, rb) {
      var a = cellValue(ra, index), b = cellValue(rb, index);
      if (a === null && b === null) return 0;
      if (a === null) return 1;
      if (b === null) return -1;
      var c = compare(a, b, numeric);
      return descending ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  // Hide rows that do not match the text filter (any cell text or the model's key/name/family) and the selects.
  function applyFilters() {
    var text = (doc.getElementById("filter-text").value || "").toLowerCase().trim();
    var selects = doc.querySelectorAll("select[data-filter]");
    var wanted = {};
    Array.prototype.forEach.call(selects, function (s) { if (s.value) wanted[s.getAttribute("data-filter")] = s.value; });
    var shown = 0, total = 0;
    Array.prototype.forEach.call(doc.querySelectorAll("table.filterable tbody tr"), function (row) {
      var ok = !text || (row.getAttribute("data-search") + " " + row.textContent).toLowerCase().indexOf(text) >= 0;
      for (var key in wanted) if (row.getAttribute("data-" + key) !== wanted[key]) ok = false;
      row.hidden = !ok;
      if (row.closest(".panel") && !row.closest(".panel").hidden) { total += 1; if (ok) shown += 1; }
    });
    var count = doc.getElementById("row-count");
    if (count) count.textContent = shown + " of " + total + " rows shown";
  }

  function showTab(button, keepHash) {
    Array.prototype.forEach.call(doc.querySelectorAll(".tabs button"), function (b) {
      var on = b === button;
      b.setAttribute("aria-selected", on ? "true" : "false");
      doc.getElementById(b.getAttribute("aria-controls")).hidden = !on;
    });
    if (!keepHash && history.replaceState) history.replaceState(null, "", "#" + button.getAttribute("data-tab"));
    applyFilters();
  }

  function copy(button) {
    var text = button.getAttribute("data-copy");
    function done(ok) {
      var old = button.textContent;
      button.textContent = ok ? "copied" : "select + Ctrl-C";
      setTimeout(function () { button.textContent = old; }, 1200);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
      return;
    }
    var area = doc.createElement("textarea");
    area.value = text;
    doc.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = doc.execCommand("copy"); } catch (err) { ok = false; }
    doc.body.removeChild(area);
    done(ok);
  }

  doc.addEventListener("click", function (ev) {
    var t = ev.target;
    var th = t.closest("th.sortable");
    if (th) { sortBy(th); return; }
    var tab = t.closest(".tabs button");
    if (tab) { showTab(tab); return; }
    var open = t.closest("[data-card]");
    if (open) { doc.getElementById(open.getAttribute("data-card")).showModal(); return; }
    if (t.closest("dialog .close")) { t.closest("dialog").close(); return; }
    if (t.tagName === "DIALOG") {  // a click on the backdrop (outside the card's box) closes it
      var r = t.getBoundingClientRect();
      if (ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top || ev.clientY > r.bottom) t.close();
      return;
    }
    var cp = t.closest("button.copy");
    if (cp) copy(cp);
  });
  doc.addEventListener("keydown", function (ev) {  // headers are focusable: Enter / Space sorts
    var th = ev.target.closest && ev.target.closest("th.sortable");
    if (th && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); sortBy(th); }
  });
  doc.getElementById("filter-text").addEventListener("input", applyFilters);
  Array.prototype.forEach.call(doc.querySelectorAll("select[data-filter]"), function (s) {
    s.addEventListener("change", applyFilters);
  });
  var meta = doc.getElementById("show-meta");
  meta.addEventListener("change", function () { doc.body.classList.toggle("show-meta", meta.checked); });
  doc.body.classList.toggle("show-meta", meta.checked);
  var initial = null;
  try {
    var want = decodeURIComponent(location.hash.slice(1));
    if (want) initial = doc.querySelector('.tabs button[data-tab="' + CSS.escape(want) + '"]');
  } catch (err) { initial = null; }
  // Without this script every panel shows, stacked; with it one tab at a time (the URL's #tab, else the first).
  showTab(initial || doc.querySelector(".tabs button"), true);
})();
