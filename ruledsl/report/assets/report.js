/* ruledsl HTML report: draws each chart of the report's JSON (script#ruledsl-charts) with uPlot.
 *
 * A chart: the metric (and the window mean the rules compare, and a healthy run of the same
 * trainer) over steps; alert episodes shaded in their severity's colour; thresholds dashed;
 * non-finite values as red ticks at the bottom. Hover shows step and values in the legend,
 * dragging across the plot zooms on those steps (double-click: all steps again), and the
 * "log scale" box switches the value axis (offered when every value is positive).
 * Text is only ever set as textContent (uPlot does the same): nothing from a log is parsed as HTML.
 */
(function () {
  "use strict";
  var SEVERITY = { low: "#8a8f98", medium: "#e0a100", high: "#e8590c", critical: "#c92a2a" };
  var ROLE = { value: "#1f6feb", mean: "#6e40c9", healthy: "#2da44e" };
  var HEIGHT = 240;
  var specs = JSON.parse(document.getElementById("ruledsl-charts").textContent);

  function number(v) {
    if (v == null) return "—";
    var a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(2) : String(+v.toPrecision(5));
  }

  function valueRange(spec) {
    var lo = Infinity, hi = -Infinity;
    spec.series.forEach(function (s) {
      s.values.forEach(function (v) { if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    });
    spec.levels.forEach(function (l) { lo = Math.min(lo, l.value); hi = Math.max(hi, l.value); });
    if (!isFinite(lo)) return [0, 1];
    return [lo, hi];
  }

  function yRange(spec, log) {
    return function (u, min, max) {
      var r = valueRange(spec), lo = Math.min(r[0], min == null ? r[0] : min), hi = Math.max(r[1], max == null ? r[1] : max);
      if (log) return [lo / 1.5, hi * 1.5];
      var pad = hi > lo ? (hi - lo) * 0.06 : Math.max(Math.abs(hi) * 0.1, 1e-9);
      return [lo - pad, hi + pad];
    };
  }

  function clipToPlot(u, draw) {
    var ctx = u.ctx, b = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(b.left, b.top, b.width, b.height);
    ctx.clip();
    draw(ctx, b);
    ctx.restore();
  }

  function drawBands(spec) {
    return function (u) {
      clipToPlot(u, function (ctx, b) {
        spec.bands.forEach(function (band) {
          var x0 = u.valToPos(band.first, "x", true), x1 = u.valToPos(band.last, "x", true);
          ctx.fillStyle = SEVERITY[band.severity] || SEVERITY.low;
          ctx.globalAlpha = 0.22;
          ctx.fillRect(x0, b.top, Math.max(x1 - x0, 2 * devicePixelRatio), b.height);
        });
      });
    };
  }

  function drawMarks(spec) {
    return function (u) {
      var px = devicePixelRatio;
      clipToPlot(u, function (ctx, b) {
        ctx.lineWidth = 1.2 * px;
        ctx.setLineDash([5 * px, 3 * px]);
        ctx.font = 11 * px + "px sans-serif";
        ctx.textAlign = "right";
        spec.levels.forEach(function (level) {
          var y = u.valToPos(level.value, "y", true);
          ctx.strokeStyle = ctx.fillStyle = SEVERITY[level.severity] || "#57606a";
          ctx.beginPath();
          ctx.moveTo(b.left, y);
          ctx.lineTo(b.left + b.width, y);
          ctx.stroke();
          ctx.fillText(level.label, b.left + b.width - 4 * px, y - 3 * px);
        });
        ctx.setLineDash([]);
        ctx.strokeStyle = SEVERITY.critical;
        ctx.lineWidth = 1.5 * px;
        spec.nonfinite.forEach(function (step) {
          var x = u.valToPos(step, "x", true);
          ctx.beginPath();
          ctx.moveTo(x, b.top + b.height);
          ctx.lineTo(x, b.top + b.height - 8 * px);
          ctx.stroke();
        });
      });
    };
  }

  function options(spec, width, log) {
    var series = [{ label: "step", value: function (u, v) { return v == null ? "—" : String(v); } }];
    spec.series.forEach(function (s) {
      series.push({
        label: s.label, stroke: ROLE[s.role] || ROLE.value, width: s.role === "value" ? 1.5 : 1.2,
        dash: s.role === "healthy" ? [4, 3] : undefined, spanGaps: true, points: { show: false },
        value: function (u, v) { return number(v); }
      });
    });
    return {
      width: width, height: HEIGHT, series: series,
      scales: { x: { time: false }, y: { distr: log ? 3 : 1, log: 10, range: yRange(spec, log) } },
      axes: [{ label: "step", size: 40 }, { size: 72, values: function (u, vals) { return vals.map(function (v) { return v == null ? "" : number(v); }); } }],
      cursor: { drag: { x: true, y: false, setScale: true } },
      legend: { live: true },
      hooks: { drawClear: [drawBands(spec)], draw: [drawMarks(spec)], setScale: [showRange] }
    };
  }

  // The steps shown, on the plot element: what a zoom changed, for whoever reads the page (tests too).
  function showRange(u, key) {
    if (key !== "x") return;
    u.root.parentNode.setAttribute("data-steps", Math.round(u.scales.x.min) + "-" + Math.round(u.scales.x.max));
  }

  function data(spec) {
    return [spec.steps].concat(spec.series.map(function (s) { return s.values; }));
  }

  function mount(holder) {
    var spec = specs[+holder.getAttribute("data-chart")];
    var plot = holder.querySelector(".plot");
    var toggle = holder.querySelector("input.log");
    var chart = null;
    function draw() {
      if (chart) chart.destroy();
      var log = toggle ? toggle.checked : false;
      chart = new uPlot(options(spec, Math.max(plot.clientWidth, 240), log), data(spec), plot);
      plot.setAttribute("data-rendered", spec.steps.length ? "yes" : "empty");
    }
    if (toggle) {
      toggle.checked = spec.log;
      toggle.disabled = !spec.logAllowed;
      toggle.addEventListener("change", draw);
    }
    draw();
    if (window.ResizeObserver) {
      var width = plot.clientWidth;
      new ResizeObserver(function () {
        if (chart && Math.abs(plot.clientWidth - width) > 2) {
          width = plot.clientWidth;
          chart.setSize({ width: Math.max(width, 240), height: HEIGHT });
        }
      }).observe(plot);
    }
  }

  document.documentElement.classList.add("scripted");
  Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), mount);
})();
