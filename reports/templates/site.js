/* Sorting and filtering for the month page's tables. The page is complete without this script
   (every row is in the HTML); it only adds sort buttons to the column headings and shows the
   filter form. Loaded as a file so the Content Security Policy needs no 'unsafe-inline'. */
(function () {
  "use strict";

  var collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

  function compareCells(a, b, numeric) {
    var x = a.getAttribute("data-sort") || "";
    var y = b.getAttribute("data-sort") || "";
    if (x === "" || y === "") {
      return x === y ? 0 : x === "" ? 1 : -1; /* empty sorts last either way */
    }
    return numeric ? parseFloat(x) - parseFloat(y) : collator.compare(x, y);
  }

  function sortBy(table, th, index) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var numeric = th.getAttribute("data-type") === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row, position) {
      return { row: row, cell: row.cells[index], position: position };
    });
    rows.sort(function (a, b) {
      var empty = (a.cell.getAttribute("data-sort") || "") === "" ||
                  (b.cell.getAttribute("data-sort") || "") === "";
      var order = compareCells(a.cell, b.cell, numeric);
      if (!empty && !ascending) { order = -order; }
      return order || a.position - b.position;
    });
    rows.forEach(function (item) { body.appendChild(item.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
      other.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function makeSortable(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      var button = document.createElement("button");
      button.type = "button";
      while (th.firstChild) { button.appendChild(th.firstChild); }
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, th, index); });
    });
  }

  function applyFilters(tables, agencySelect, typeInput, status) {
    var agency = agencySelect.value;
    var text = typeInput.value.trim().toLocaleLowerCase();
    var shown = 0;
    var total = 0;
    tables.forEach(function (table) {
      var visible = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var rowAgency = row.getAttribute("data-agency");
        var rowType = (row.getAttribute("data-complaint-type") || "").toLocaleLowerCase();
        var match = (!agency || rowAgency === null || rowAgency === agency) &&
                    (!text || rowType.indexOf(text) !== -1);
        row.hidden = !match;
        if (match) { visible += 1; }
      });
      var count = table.querySelector("caption .rows");
      var rows = table.tBodies[0].rows.length;
      if (count) {
        count.textContent = visible === rows ? "(" + rows + " rows)"
                                             : "(" + visible + " of " + rows + " rows)";
      }
      shown += visible;
      total += rows;
    });
    status.textContent = shown === total ? "" : "Showing " + shown + " of " + total + " rows.";
  }

  function setUpFilters(tables) {
    var form = document.getElementById("filters");
    if (!form) { return; }
    var agencySelect = document.getElementById("filter-agency");
    var typeInput = document.getElementById("filter-type");
    var status = document.getElementById("filter-status");
    var apply = function () { applyFilters(tables, agencySelect, typeInput, status); };
    agencySelect.addEventListener("change", apply);
    typeInput.addEventListener("input", apply);
    form.addEventListener("submit", function (event) { event.preventDefault(); apply(); });
    form.addEventListener("reset", function () { window.setTimeout(apply, 0); });
    form.hidden = false;
  }

  function init() {
    var tables = Array.prototype.slice.call(document.querySelectorAll("table.data"));
    tables.forEach(makeSortable);
    if (tables.length) { setUpFilters(tables); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
