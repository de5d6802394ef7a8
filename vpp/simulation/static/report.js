/* The report's charts: uPlot over the JSON in #report-data (see vpp/simulation/report.py). */
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), data.zone);
  const stepped = uPlot.paths.stepped({ align: 1 });
  const bars = uPlot.paths.bars({ size: [0.55, 90] });
  const charts = [];
  const ispGroup = [];
  let syncing = false;

  function number(v, digits) {
    return v == null ? "\u2013" : v.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function fmt(unit, digits) {
    return (u, v) => (v == null ? "\u2013" : number(v, digits) + " " + unit);
  }
  function digitsFor(unit) {
    return unit === "MW" ? 3 : unit === "%" ? 1 : unit === "EUR/MWh" ? 2 : 1;
  }
  function line(label, stroke, unit, extra) {
    return Object.assign({ label: label, stroke: stroke, width: 1.6, paths: stepped, scale: unit,
                           value: fmt(unit, digitsFor(unit)), points: { show: false } }, extra || {});
  }
  // Value ticks on 1-2-5 steps (uPlot's default 2.5 steps round badly at three decimals).
  const INCRS = [];
  for (let e = -4; e <= 7; e++) [1, 2, 5].forEach((m) => INCRS.push(+(m * Math.pow(10, e)).toPrecision(1)));
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const pad = (n) => String(n).padStart(2, "0");
  // Local 24-h clock ticks in the scenario's zone; the date under the first tick and under each midnight.
  function timeValues(u, splits, axisIdx, space, incr) {
    return splits.map((ts, i) => {
      if (ts == null) return "";
      const d = tzDate(ts);
      const clock = pad(d.getHours()) + ":" + pad(d.getMinutes()) + (incr < 60 ? ":" + pad(d.getSeconds()) : "");
      const midnight = d.getHours() === 0 && d.getMinutes() === 0 && d.getSeconds() === 0;
      return i === 0 || midnight ? clock + "\n" + d.getDate() + " " + MONTHS[d.getMonth()] : clock;
    });
  }
  function widthOf(el) {
    return Math.max(300, Math.floor(el.getBoundingClientRect().width));
  }
  function syncX(u) {
    if (syncing) return;
    syncing = true;
    const min = u.scales.x.min, max = u.scales.x.max;
    ispGroup.forEach((other) => { if (other !== u) other.setScale("x", { min: min, max: max }); });
    syncing = false;
  }
  // Where the run follows the delivery period's sessions past its end: a dashed line at the period's end.
  function markWindowEnd(u) {
    if (data.window_end == null) return;
    const x = Math.round(u.valToPos(data.window_end, "x", true));
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#777";
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.fillStyle = "#555";
    ctx.font = Math.round(11 * devicePixelRatio) + "px sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    ctx.fillText("end of the delivery period", x - 4 * devicePixelRatio, u.bbox.top + 4 * devicePixelRatio);
    ctx.restore();
  }
  function make(id, opts, cols, inGroup) {
    const el = document.getElementById(id);
    if (!el) return null;
    const base = { width: widthOf(el), height: opts.height || 260, tzDate: tzDate,
                   cursor: { drag: { x: true, y: false } }, legend: { live: true } };
    if (inGroup) {
      base.cursor.sync = { key: "isp" };
      base.hooks = { setScale: [(u, key) => { if (key === "x") syncX(u); }], draw: [markWindowEnd] };
    }
    const u = new uPlot(Object.assign(base, opts), cols, el);
    if (inGroup) ispGroup.push(u);
    charts.push([u, el]);
    el.setAttribute("data-rendered", String(cols[0].length));
    return u;
  }
  function timeAxis() {
    return { stroke: "#444", grid: { stroke: "#eee" }, ticks: { stroke: "#ccc" }, values: timeValues, size: 44,
             space: 64 };
  }
  function valueAxis(unit, side) {
    return { scale: unit, label: unit, side: side || 3, stroke: "#444", incrs: INCRS,
             grid: side === 1 ? { show: false } : { stroke: "#eee" }, ticks: { stroke: "#ccc" }, size: 64 };
  }
  // Power scales include 0 (a flat line near 2.6 kW should not look like a swing), with 8 % headroom.
  function zeroBased(u, lo, hi) {
    const low = Math.min(0, lo == null ? 0 : lo) * 1.08, high = Math.max(0, hi == null ? 0 : hi) * 1.08;
    return [low, high - low < 1e-9 ? 1 : high];
  }
  const timeSeries = { label: "time", value: "{YYYY}-{MM}-{DD} {HH}:{mm}" };

  // Pool power: uncontrolled, the perfect-foresight optimum, the day-ahead commitment, delivered.
  const pool = data.pool, pu = pool.unit;
  const poolSeries = [timeSeries, line("uncontrolled", "#9e9e9e", pu, { dash: [4, 3] })];
  const poolCols = [data.isp_t, pool.uncontrolled];
  if (pool.perfect) { poolSeries.push(line("perfect-foresight plan", "#8e44ad", pu, { dash: [2, 2] })); poolCols.push(pool.perfect); }
  if (pool.committed) { poolSeries.push(line("day-ahead commitment", "#ff9800", pu, { width: 2 })); poolCols.push(pool.committed); }
  poolSeries.push(line("delivered", "#1f77b4", pu, { width: 2 }));
  poolCols.push(pool.delivered);
  make("chart-pool", { series: poolSeries, axes: [timeAxis(), valueAxis(pu)], scales: { [pu]: { range: zeroBased } } },
       poolCols, true);

  make("chart-price", { height: 200, series: [timeSeries, line("day-ahead price", "#2ca02c", "EUR/MWh")],
                        axes: [timeAxis(), valueAxis("EUR/MWh")] }, [data.isp_t, data.price], true);

  if (data.afrr) {
    const a = data.afrr;
    make("chart-afrr", {
      series: [
        { label: "time", value: "{HH}:{mm}:{ss}" },
        line("band high", "rgba(214,39,40,0.35)", "MW", { width: 1 }),
        line("band low", "rgba(214,39,40,0.35)", "MW", { width: 1 }),
        line("request (applied)", "#333", "MW", { width: 1.4 }),
        line("ramp-limited request", "#d62728", "MW", { width: 1.4, dash: [5, 3] }),
        line("supplied", "#1f77b4", "MW", { width: 2 }),
      ],
      bands: [{ series: [1, 2], fill: "rgba(214,39,40,0.10)" }],
      axes: [timeAxis(), valueAxis("MW")],
    }, [a.t, a.high, a.low, a.request, a.ramped, a.supplied], false);
  }

  data.points.forEach((p, k) => {
    make("chart-point-" + k, {
      height: 220,
      series: [timeSeries, line("limit", "#d62728", p.unit, { width: 2 }),
               line("uncontrolled", "#9e9e9e", p.unit, { dash: [4, 3] }), line("load", "#1f77b4", p.unit, { width: 2 })],
      axes: [timeAxis(), valueAxis(p.unit)],
      scales: { [p.unit]: { range: zeroBased } },
    }, [data.isp_t, p.limit, p.uncontrolled, p.load], true);
  });

  data.cars.forEach((c, k) => {
    make("chart-car-" + k, {
      height: 170,
      series: [{ label: "time", value: "{HH}:{mm}" }, line("limit in force", "#d62728", "kW", { dash: [4, 3] }),
               line("power", "#1f77b4", "kW", { width: 2 }),
               { label: "SoC", stroke: "#2ca02c", width: 1.4, scale: "%", value: fmt("%", 1), points: { show: false } }],
      axes: [timeAxis(), Object.assign(valueAxis("kW"), { size: 48 }),
             Object.assign(valueAxis("%", 1), { size: 44 })],
      scales: { "%": { range: [0, 100] }, kW: { range: zeroBased } },
    }, [c.t, c.limit, c.power, c.soc], false);
  });

  // The money: one bar per market, green when saved or earned, red when it cost.
  const m = data.money, idx = m.labels.map((_, i) => i);
  make("chart-money", {
    height: 240,
    scales: { x: { time: false, range: [-0.6, m.labels.length - 0.4] } },
    series: [{ label: "market", value: (u, i) => (i == null ? "\u2013" : m.labels[i]) },
             { label: "saved / earned", fill: "rgba(44,160,44,0.75)", stroke: "#2ca02c", paths: bars, scale: "EUR",
               value: fmt("EUR", 2), points: { show: false } },
             { label: "cost", fill: "rgba(214,39,40,0.75)", stroke: "#d62728", paths: bars, scale: "EUR",
               value: fmt("EUR", 2), points: { show: false } }],
    axes: [{ splits: () => idx, values: (u, splits) => splits.map((i) => m.labels[i] || ""), grid: { show: false },
             stroke: "#444" },
           valueAxis("EUR")],
    cursor: { drag: { x: false, y: false } },
  }, [idx, m.eur.map((v) => (v >= 0 ? v : null)), m.eur.map((v) => (v < 0 ? v : null))], false);

  // The same saving summed ISP by ISP (at the end of each ISP), on the 15-minute time axis.
  const cum = m.cumulative;
  make("chart-money-time", {
    height: 220,
    series: [timeSeries,
             { label: "day-ahead energy", stroke: "#2ca02c", width: 1.6, scale: "EUR", value: fmt("EUR", 2), points: { show: false } },
             { label: "imbalance", stroke: "#d62728", width: 1.6, scale: "EUR", value: fmt("EUR", 2), points: { show: false } },
             { label: "energy, both", stroke: "#1f77b4", width: 2.2, scale: "EUR", value: fmt("EUR", 2), points: { show: false } }],
    axes: [timeAxis(), valueAxis("EUR")],
  }, [data.isp_t, cum.dayahead, cum.imbalance, cum.energy], true);

  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => charts.forEach(([u, el]) => u.setSize({ width: widthOf(el), height: u.height })), 100);
  });
})();
