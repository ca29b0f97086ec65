// Sorts the trial table by each cell's data-sort value (numbers numerically, else text); cells without one go
// last. A click on the same header again reverses the order.
(function () {
  function key(cell) {
    var value = cell.getAttribute("data-sort");
    if (value === null || value === "") return null;
    var number = Number(value);
    return isNaN(number) ? value : number;
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0], column = th.cellIndex;
      var ascending = th.getAttribute("data-order") !== "asc";
      table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("data-order"); });
      th.setAttribute("data-order", ascending ? "asc" : "desc");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a.cells[column]), y = key(b.cells[column]);
        if (x === null || y === null) return (x === null) - (y === null);
        var numeric = typeof x === "number" && typeof y === "number";
        var order = numeric ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
