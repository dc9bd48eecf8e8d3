// sparsebench report: sortable tables, filters and record links. No network, no eval, no
// innerHTML: rows are only moved or hidden, never rebuilt from strings.
(function () {
  "use strict";

  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) return null;
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
    if (!numeric) return raw.toLowerCase();
    if (raw === "") return null;
    var v = parseFloat(raw);
    return isNaN(v) ? null : v;
  }

  function sortBy(table, th) {
    var index = th.cellIndex;
    var numeric = th.getAttribute("data-sort") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r.setAttribute("data-pos", i); });
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      if (x === null && y === null) return a.getAttribute("data-pos") - b.getAttribute("data-pos");
      if (x === null) return 1;  // missing values last, whichever the direction
      if (y === null) return -1;
      var c = x < y ? -1 : x > y ? 1 : 0;
      if (c === 0) return a.getAttribute("data-pos") - b.getAttribute("data-pos");
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (!th.hasAttribute("data-sort")) return;
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
      });
    });
  });

  // Filters on a suite page: family, cost axis, parameter and method-id text. The leaderboard's
  // rows carry the attributes; every other row, plot point and figure of the page follows its
  // record's leaderboard row (data-key), and figures follow the family and axis they show.
  function applyFilters(form) {
    var families = {};
    Array.prototype.forEach.call(form.querySelectorAll("input[name=family]"), function (box) {
      families[box.value] = box.checked;
    });
    var axis = form.elements.axis ? form.elements.axis.value : "";
    var param = form.elements.param ? form.elements.param.value : "";
    var text = form.elements.text ? form.elements.text.value.toLowerCase() : "";
    var visible = {};
    var board = document.querySelector("table.leaderboard");
    var shown = 0, total = 0;
    if (board) {
      Array.prototype.forEach.call(board.tBodies[0].rows, function (row) {
        var params = [];
        try { params = JSON.parse(row.getAttribute("data-params") || "[]"); } catch (e) { params = []; }
        var ok = families[row.getAttribute("data-family")] !== false &&
          (!param || params.indexOf(param) >= 0) &&
          (!text || (row.getAttribute("data-method") || "").toLowerCase().indexOf(text) >= 0);
        visible[row.getAttribute("data-key")] = ok;
        row.hidden = !ok;
        total += 1;
        if (ok) shown += 1;
      });
    }
    Array.prototype.forEach.call(document.querySelectorAll("main tr[data-key], svg a[data-key]"), function (el) {
      if (el.closest("table.leaderboard")) return;
      var key = el.getAttribute("data-key");
      if (key in visible) {
        if (el.tagName.toLowerCase() === "a") el.style.display = visible[key] ? "" : "none";
        else el.hidden = !visible[key];
      }
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-axis]"), function (el) {
      if (el.tagName.toLowerCase() === "table" && el.closest("figure")) return;  // follows its figure
      var byAxis = axis && el.getAttribute("data-axis") !== axis;
      var byFamily = el.hasAttribute("data-family") && el.tagName.toLowerCase() === "figure" &&
        families[el.getAttribute("data-family")] === false;
      el.hidden = byAxis || byFamily;
      if (el.tagName.toLowerCase() === "td" || el.tagName.toLowerCase() === "th") el.style.display = el.hidden ? "none" : "";
    });
    var out = form.querySelector(".shown-count");
    if (out) out.textContent = shown + " of " + total + " methods shown";
  }
  Array.prototype.forEach.call(document.querySelectorAll("form.filters"), function (form) {
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    form.addEventListener("input", function () { applyFilters(form); });
    form.addEventListener("change", function () { applyFilters(form); });
  });

  // A link to a record opens its (collapsed) details block.
  function openTarget() {
    var id = location.hash.slice(1);
    if (!/^[a-z0-9-]+$/.test(id)) return;
    var el = document.getElementById(id);
    if (el && el.tagName === "DETAILS") {
      el.open = true;
      el.scrollIntoView({ block: "start" });
    }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
