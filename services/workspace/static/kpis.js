// Draws the KPI panel's chart: the figure (data and layout) was built on the server with plotly's
// Python API and sits in the page as JSON; plotly.js (served from the installed plotly package)
// renders it as SVG. The table under the chart holds the same figures for anyone without it.
(function () {
  "use strict";

  const target = document.getElementById("kpi-chart");
  const source = document.getElementById("kpi-figure");
  if (!target || !source || typeof window.Plotly === "undefined") {
    return;
  }
  const figure = JSON.parse(source.textContent);
  window.Plotly.newPlot(target, figure.data, figure.layout, { displaylogo: false, responsive: true })
    .then(function () { target.dataset.rendered = "true"; });
})();
