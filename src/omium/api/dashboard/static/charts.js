// Bar charts drawn by uPlot (vendored) from each .chart's data-series: {labels, values}.
// Colours come from the page's CSS variables, so both themes draw correctly; charts are
// redrawn when the theme or the width changes.
(function () {
  "use strict";
  var charts = [];

  // A theme colour as the canvas needs it: the palette is written with light-dark(), which
  // only an element's computed colour resolves (a style property set here is CSSOM, which
  // the CSP allows; no style attribute is ever written into the page).
  function css(name) {
    var probe = document.createElement("span");
    probe.style.color = "var(" + name + ")";
    probe.hidden = true;
    document.body.appendChild(probe);
    var colour = getComputedStyle(probe).color;
    probe.remove();
    return colour;
  }

  function draw(el) {
    var data;
    try { data = JSON.parse(el.getAttribute("data-series") || "{}"); } catch (e) { return; }
    var labels = data.labels || [], values = data.values || [];
    el.textContent = "";
    if (!labels.length) {
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = "Nothing to chart in this window.";
      el.appendChild(p);
      return;
    }
    var unit = el.getAttribute("data-unit") || "";
    var xs = labels.map(function (_, i) { return i; });
    var text = css("--muted"), grid = css("--line"), fill = css("--accent");
    var opts = {
      width: Math.max(el.clientWidth, 240), height: 220,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: [-0.6, labels.length - 0.4] },
                y: { range: function (u, min, max) { return [0, (max || 1) * 1.15]; } } },
      axes: [
        { stroke: text, grid: { show: false }, ticks: { stroke: grid },
          splits: function () { return xs; },
          values: function (u, splits) { return splits.map(function (i) { return labels[i] || ""; }); } },
        { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid }, size: 64,
          values: function (u, splits) { return splits.map(function (v) { return unit + v; }); } }
      ],
      series: [{}, { label: "spend", stroke: fill, fill: fill, width: 0,
                     paths: uPlot.paths.bars({ size: [0.6, 64] }),
                     points: { show: false } }]
    };
    charts.push(new uPlot(opts, [xs, values], el));
  }

  function drawAll() {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll(".chart[data-series]").forEach(draw);
  }

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(drawAll, 150);
  });
  document.addEventListener("omium:theme", drawAll);
  window.OmiumCharts = { drawAll: drawAll };
})();
