/* The VPP operator view: plain JavaScript, no build step, no third-party code. Charts are drawn as inline SVG. */
'use strict';
(() => {
  const KEY = 'vpp.apiKey';
  const ISP_MS = 15 * 60 * 1000;
  const S = { me: null, tz: 'Europe/Amsterdam', cleanup: [] };
  const $ = (sel, root = document) => root.querySelector(sel);

  /* ---------- DOM ---------- */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const SVGNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }
  function onCleanup(fn) { S.cleanup.push(fn); }
  function every(ms, fn) { const t = setInterval(fn, ms); onCleanup(() => clearInterval(t)); return t; }

  /* ---------- API ---------- */
  class ApiError extends Error {
    constructor(status, message, body) { super(message); this.status = status; this.body = body; }
  }
  async function api(path, opts = {}) {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ''}` };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method: opts.method || 'GET', headers, signal: opts.signal,
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'The service does not answer. Check that it is running and reload the page.');
    }
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      let body = null;
      try { body = await res.json(); message = (body.error && body.error.message) || body.detail || message; } catch (_) { /* not JSON */ }
      if (res.status === 401 && !opts.quiet401) { signOut('Your key was refused (unknown or revoked). Sign in again.'); }
      throw new ApiError(res.status, message, body);
    }
    if (opts.raw) return res;
    const type = res.headers.get('content-type') || '';
    return type.includes('json') ? res.json() : res.text();
  }
  async function download(path, fallbackName) {
    const res = await api(path, { raw: true });
    const cd = res.headers.get('content-disposition') || '';
    const m = /filename="?([^";]+)"?/.exec(cd);
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: m ? m[1] : fallbackName });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
    return { name: m ? m[1] : fallbackName, size: blob.size };
  }
  function errorBox(err, what) {
    const hint = err.status === 403 ? ' Your key\'s role may not see this; use a trader or admin key.'
      : err.status === 0 ? '' : err.status >= 500 ? ' The service failed; try again, and check its logs if it persists.' : '';
    return h('div', { class: 'error', role: 'alert' }, `${what}: ${err.message}.${hint}`);
  }

  /* ---------- time and numbers ---------- */
  function tzParts(d) {
    const f = new Intl.DateTimeFormat('en-GB', { timeZone: S.tz, year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'longOffset' });
    const p = {};
    for (const x of f.formatToParts(d)) p[x.type] = x.value;
    p.offset = (p.timeZoneName || 'GMT').replace('GMT', 'UTC') || 'UTC';
    if (p.offset === 'UTC') p.offset = 'UTC+00:00';
    return p;
  }
  const asDate = (v) => (v instanceof Date ? v : new Date(v));
  function fmtDateTime(v, seconds = false) {
    if (v === null || v === undefined) return '—';
    const p = tzParts(asDate(v));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${seconds ? ':' + p.second : ''} ${p.offset}`;
  }
  function fmtClock(v, seconds = false) {
    const p = tzParts(asDate(v));
    return `${p.hour}:${p.minute}${seconds ? ':' + p.second : ''}`;
  }
  function localDay(v) { const p = tzParts(asDate(v)); return `${p.year}-${p.month}-${p.day}`; }
  function offsetsOf(dates) { return [...new Set(dates.map((d) => tzParts(asDate(d)).offset))].join(' / '); }
  function zoneLabel(dates) { return `${S.tz}, ${offsetsOf(dates.length ? dates : [new Date()])}`; }
  function num(v, digits = 1) {
    if (v === null || v === undefined || Number.isNaN(v)) return '—';
    return Number(v).toLocaleString('en-GB', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function duration(ms) {
    const neg = ms < 0; let t = Math.abs(Math.floor(ms / 1000));
    const d = Math.floor(t / 86400); t -= d * 86400;
    const hh = Math.floor(t / 3600); t -= hh * 3600;
    const mm = Math.floor(t / 60); const ss = t - mm * 60;
    const txt = `${d ? d + ' d ' : ''}${String(hh).padStart(2, '0')}:${String(mm).padStart(2, '0')}:${String(ss).padStart(2, '0')}`;
    return neg ? `closed ${txt} ago` : txt;
  }
  const floorIsp = (ms) => Math.floor(ms / ISP_MS) * ISP_MS;
  const iso = (ms) => new Date(ms).toISOString().replace('.000Z', 'Z');

  /* ---------- charts (inline SVG) ---------- */
  function niceTicks(lo, hi, n = 5) {
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
    if (lo === hi) { lo -= 1; hi += 1; }
    const raw = (hi - lo) / n; const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw) || raw;
    const ticks = [];
    for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.round(v / step) * step);
    if (ticks[ticks.length - 1] < hi) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }
  /**
   * series: {label, color, values, kind: 'line'|'step'|'area', low, high, dash}
   * xs: Date[] (step series hold each value for stepMs after its x)
   */
  function chart({ title, xs, series, yUnit, xTitle, stepMs = 0, height = 240, zeroLine = true, id }) {
    const W = 960; const H = height; const m = { l: 64, r: 16, t: 12, b: 42 };
    const t0 = xs.length ? asDate(xs[0]).getTime() : Date.now();
    const t1 = xs.length ? asDate(xs[xs.length - 1]).getTime() + stepMs : t0 + 1;
    const all = [];
    for (const se of series) for (const arr of [se.values, se.low, se.high]) if (arr) for (const v of arr) if (Number.isFinite(v)) all.push(v);
    let lo = all.length ? Math.min(...all) : 0; let hi = all.length ? Math.max(...all) : 1;
    if (zeroLine) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    const ticks = niceTicks(lo, hi);
    lo = ticks[0]; hi = ticks[ticks.length - 1];
    const X = (t) => m.l + ((t - t0) / Math.max(1, t1 - t0)) * (W - m.l - m.r);
    const Y = (v) => H - m.b - ((v - lo) / (hi - lo || 1)) * (H - m.t - m.b);
    const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, id });
    svg.append(s('title', {}, title));
    for (const v of ticks) {
      svg.append(s('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }));
      svg.append(s('text', { x: m.l - 6, y: Y(v) + 4, 'text-anchor': 'end' }, num(v, Math.abs(hi - lo) < 10 ? 2 : 0)));
    }
    svg.append(s('text', { x: 12, y: m.t + (H - m.t - m.b) / 2, transform: `rotate(-90 12 ${m.t + (H - m.t - m.b) / 2})`,
      'text-anchor': 'middle' }, yUnit));
    // x ticks: at round local hours (or minutes for short spans)
    const span = t1 - t0;
    const stepX = span > 36 * 3600e3 ? 6 * 3600e3 : span > 12 * 3600e3 ? 3 * 3600e3 : span > 3 * 3600e3 ? 3600e3
      : span > 1800e3 ? 600e3 : span > 600e3 ? 120e3 : 60e3;
    const firstTick = Math.ceil(t0 / stepX) * stepX;
    for (let t = firstTick; t <= t1; t += stepX) {
      svg.append(s('line', { class: 'grid', x1: X(t), x2: X(t), y1: m.t, y2: H - m.b }));
      const label = stepX >= 3 * 3600e3 && fmtClock(t) === '00:00' ? localDay(t).slice(5) : fmtClock(t);
      svg.append(s('text', { x: X(t), y: H - m.b + 14, 'text-anchor': 'middle' }, label));
    }
    svg.append(s('text', { x: m.l + (W - m.l - m.r) / 2, y: H - 6, 'text-anchor': 'middle' }, xTitle || `time (${zoneLabel(xs)})`));
    svg.append(s('line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
    svg.append(s('line', { class: 'axis', x1: m.l, x2: W - m.r, y1: Y(Math.max(lo, Math.min(0, hi))), y2: Y(Math.max(lo, Math.min(0, hi))) }));
    const tx = xs.map((x) => asDate(x).getTime());
    const pathOf = (vals, step) => {
      let d = ''; let pen = false;
      vals.forEach((v, i) => {
        if (!Number.isFinite(v)) { pen = false; return; }
        const x0 = X(tx[i]); const y = Y(v);
        d += `${pen ? 'L' : 'M'}${x0.toFixed(1)},${y.toFixed(1)}`;
        if (step) d += `L${X(tx[i] + stepMs).toFixed(1)},${y.toFixed(1)}`;
        pen = true;
      });
      return d;
    };
    for (const se of series) {
      const step = se.kind === 'step' || (se.kind === 'area' && stepMs > 0);
      if (se.kind === 'area') {
        const up = []; const down = [];
        se.high.forEach((v, i) => {
          if (!Number.isFinite(v) || !Number.isFinite(se.low[i])) return;
          up.push([X(tx[i]), Y(v)]); if (step) up.push([X(tx[i] + stepMs), Y(v)]);
          down.push([X(tx[i]), Y(se.low[i])]); if (step) down.push([X(tx[i] + stepMs), Y(se.low[i])]);
        });
        if (up.length) {
          const pts = [...up, ...down.reverse()].map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ');
          svg.append(s('polygon', { points: pts, fill: se.color, stroke: 'none' }));
        }
      } else {
        svg.append(s('path', { d: pathOf(se.values, step), fill: 'none', stroke: se.color, 'stroke-width': se.width || 2,
          'stroke-dasharray': se.dash || null }));
      }
    }
    const legend = h('div', { class: 'legend', 'aria-hidden': 'true' },
      series.map((se) => h('span', {}, h('i', { style: `background:${se.color}` }), se.label)));
    return h('figure', { style: 'margin:0' }, h('figcaption', { class: 'small' }, h('strong', {}, title)), legend, svg);
  }

  /* ---------- shell ---------- */
  function showSignin(message) {
    $('#signin').hidden = false; $('#nav').hidden = true; $('#who').hidden = true;
    $('#page').replaceChildren();
    const err = $('#signin-error');
    err.hidden = !message; err.textContent = message || '';
    $('#api-key').focus();
  }
  function signOut(message) {
    sessionStorage.removeItem(KEY); S.me = null; teardown(); showSignin(message);
  }
  async function signIn(key) {
    sessionStorage.setItem(KEY, key);
    try {
      S.me = await api('/api/v1/ui/me', { quiet401: true });
    } catch (e) {
      sessionStorage.removeItem(KEY);
      showSignin(e.status === 401 ? 'This key is unknown or revoked. Check it and try again.' : e.message);
      return;
    }
    if (!['trader', 'admin'].includes(S.me.role)) {
      sessionStorage.removeItem(KEY);
      showSignin(`This key has the role "${S.me.role}"; the view needs a trader or admin key.`);
      return;
    }
    S.tz = S.me.market_timezone || S.tz;
    $('#signin').hidden = true; $('#nav').hidden = false; $('#who').hidden = false;
    $('#who-name').textContent = `${S.me.name} (${S.me.role})`;
    for (const a of document.querySelectorAll('[data-admin]')) a.hidden = S.me.role !== 'admin';
    route();
  }
  function teardown() { for (const fn of S.cleanup.splice(0)) { try { fn(); } catch (_) { /* ignore */ } } }
  function parseHash() {
    const [path, query] = (location.hash.replace(/^#\/?/, '') || 'portfolio').split('?');
    const parts = path.split('/').filter(Boolean);
    return { page: parts[0] || 'portfolio', rest: parts.slice(1), params: new URLSearchParams(query || '') };
  }
  function setParams(params) {
    const { page, rest } = parseHash();
    const q = params.toString();
    history.replaceState(null, '', `#/${[page, ...rest].join('/')}${q ? '?' + q : ''}`);
  }
  const PAGES = {};
  async function route() {
    if (!S.me) return;
    teardown();
    const r = parseHash();
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.page === r.page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const root = h('div', { id: `page-${r.page}`, 'data-page': r.page });
    $('#page').replaceChildren(root);
    const render = PAGES[r.page];
    if (!render) { root.append(h('div', { class: 'empty' }, 'No such page. Choose one in the menu above.')); return; }
    if (r.page === 'connections' && S.me.role !== 'admin') {
      root.append(h('div', { class: 'empty' }, 'CPO connections are for admin keys. Sign in with an admin key to see them.'));
      return;
    }
    try { await render(root, r); } catch (e) {
      if (e.name !== 'AbortError') root.append(errorBox(e, 'This page could not be loaded'));
    }
  }

  /* ---------- shared bits ---------- */
  async function poolPicker(root, params, onPick, title = 'Pools') {
    const pools = await api('/api/v1/portfolio/pools');
    const box = h('section', { class: 'card', 'aria-labelledby': 'pools-h' }, h('h2', { id: 'pools-h' }, title));
    root.append(box);
    if (!pools.length) {
      box.append(h('div', { class: 'empty', id: 'pools-empty' }, 'No pools yet: no CPO has pushed an active session and no site or congestion point is configured. ',
        'Connect a CPO (CPO connections page, admin) or import the topology (POST /api/v1/portfolio/topology/import).'));
      return { pools, pool: null };
    }
    const chosen = params.get('pool') && pools.some((p) => p.pool === params.get('pool')) ? params.get('pool')
      : (pools.find((p) => p.sessions > 0) || pools[0]).pool;
    const table = h('table', { id: 'pools-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Pool'), h('th', {}, 'Kind'), h('th', { class: 'num' }, 'Sessions now (count)'),
        h('th', { class: 'num' }, 'Max power now (kW)'), h('th', { class: 'num' }, 'Capacity limit (kW)'))),
      h('tbody', {}, pools.map((p) => h('tr', { 'data-pool': p.pool },
        h('td', {}, h('button', { type: 'button', class: p.pool === chosen ? '' : 'secondary', 'aria-pressed': String(p.pool === chosen),
          onclick: () => { params.set('pool', p.pool); setParams(params); onPick(p.pool); } }, p.pool)),
        h('td', {}, p.kind), h('td', { class: 'num', 'data-col': 'sessions' }, p.sessions),
        h('td', { class: 'num', 'data-col': 'max_kw_now' }, num(p.max_kw_now, 1)),
        h('td', { class: 'num' }, p.capacity_kw === null ? '—' : num(p.capacity_kw, 1))))));
    box.append(h('div', { class: 'scroll', style: 'max-height:220px' }, table));
    return { pools, pool: chosen };
  }
  function tableOf(columns, rows, attrs = {}) {
    return h('table', attrs,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null, scope: 'col' }, c.title)))),
      h('tbody', {}, rows.map((r, i) => h('tr', r.__attrs || { 'data-row': i },
        columns.map((c) => h('td', { class: c.num ? 'num' : null, 'data-col': c.key }, c.render ? c.render(r) : r[c.key]))))));
  }

  /* ---------- Portfolio ---------- */
  PAGES.portfolio = async (root, r) => {
    root.append(h('h1', {}, 'Portfolio'));
    const detail = h('div', { id: 'pool-detail' });
    const pick = (pool) => {
      for (const b of root.querySelectorAll('#pools-table button')) {
        const on = b.textContent === pool; b.setAttribute('aria-pressed', String(on)); b.className = on ? '' : 'secondary';
      }
      return loadPool(detail, pool);
    };
    const { pool } = await poolPicker(root, r.params, pick);
    root.append(detail);
    if (pool) await loadPool(detail, pool);
  };

  async function loadPool(box, pool) {
    const ctl = new AbortController(); onCleanup(() => ctl.abort());
    const startMs = floorIsp(Date.now());
    const start = iso(startMs); const end = iso(startMs + 48 * 3600e3);
    box.replaceChildren(h('p', { class: 'muted' }, `Loading ${pool}…`));
    box.dataset.pool = pool; box.dataset.start = start; box.dataset.end = end;
    const q = `start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}`;
    const enc = encodeURIComponent(pool);
    const [flex, forecast, commitments] = await Promise.all([
      api(`/api/v1/portfolio/pools/${enc}/flexibility?${q}`, { signal: ctl.signal }),
      api(`/api/v1/portfolio/pools/${enc}/forecast?${q}`, { signal: ctl.signal }).catch((e) => e),
      api(`/api/v1/commitments?pool=${enc}&${q}`, { signal: ctl.signal }).catch((e) => e),
    ]);
    const xs = flex.isp_starts.map((t) => new Date(t));
    const schedule = new Array(xs.length).fill(NaN);
    const commitmentRows = Array.isArray(commitments) ? commitments : [];
    const pos = new Map(xs.map((d, i) => [d.getTime(), i]));
    for (const c of commitmentRows) {
      if (c.kind !== 'day_ahead_schedule') continue;
      const i = pos.get(new Date(c.isp_start).getTime());
      if (i !== undefined) schedule[i] = c.power_kw;
    }
    const hasSchedule = schedule.some(Number.isFinite);
    box.replaceChildren();
    box.append(h('section', { class: 'card' },
      h('h2', {}, `Flexibility of ${pool}, next 48 h per ISP (15 min)`),
      h('p', { class: 'muted small' }, `From ${fmtDateTime(start)} to ${fmtDateTime(end)}. Sessions now: `,
        h('strong', { id: 'sessions-now' }, flex.sessions_now), `; expected arrivals in the window: ${num(flex.sessions_forecast, 1)}. `,
        'Power sign: positive = charging, negative = discharging (V2G).'),
      chart({ title: 'Power band, baseline and committed schedule', xs, stepMs: ISP_MS, yUnit: 'power (kW)', id: 'chart-power',
        series: [
          { label: 'min–max band (kW)', kind: 'area', low: flex.min_kw, high: flex.max_kw, color: 'rgba(11,92,173,.18)' },
          { label: 'max at P10 availability (kW)', kind: 'step', values: flex.max_kw_p10, color: 'var(--c4)', dash: '5 4' },
          { label: 'baseline (kW)', kind: 'step', values: flex.baseline_kw, color: 'var(--c1)' },
          { label: hasSchedule ? 'committed schedule (kW)' : 'committed schedule: none', kind: 'step', values: schedule, color: 'var(--c2)', width: 2.5 },
        ] }),
      Array.isArray(commitments) ? null : errorBox(commitments, 'Commitments could not be loaded'),
      hasSchedule ? null : h('p', { class: 'muted small', id: 'no-schedule' }, 'No day-ahead schedule is committed for this pool in the window: import day-ahead results on a bid (Bids page) to commit one.'),
      h('div', { class: 'grid2' },
        chart({ title: 'Energy bounds (cumulative from now)', xs, stepMs: ISP_MS, yUnit: 'energy (kWh)', id: 'chart-energy',
          series: [
            { label: 'energy band (kWh)', kind: 'area', low: flex.energy_min_kwh, high: flex.energy_max_kwh, color: 'rgba(46,147,60,.18)' },
            { label: 'minimum energy (kWh)', kind: 'step', values: flex.energy_min_kwh, color: 'var(--c3)' },
            { label: 'maximum energy (kWh)', kind: 'step', values: flex.energy_max_kwh, color: 'var(--c3)', dash: '5 4' },
          ] }),
        forecastChart(forecast, xs)),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'secondary', id: 'flex-csv',
          onclick: () => download(`/api/v1/portfolio/pools/${enc}/flexibility?${q}&format=csv`, `${pool}-flexibility.csv`) }, 'Download flexibility CSV')),
      h('details', { id: 'flex-details' }, h('summary', {}, 'Flexibility per ISP as a table'),
        h('div', { class: 'scroll' }, tableOf([
          { key: 'isp', title: `ISP start (${zoneLabel(xs)})`, render: (r) => fmtDateTime(r.isp) },
          { key: 'baseline_kw', title: 'Baseline (kW)', num: true, render: (r) => num(r.baseline_kw, 1) },
          { key: 'min_kw', title: 'Min (kW)', num: true, render: (r) => num(r.min_kw, 1) },
          { key: 'max_kw', title: 'Max (kW)', num: true, render: (r) => num(r.max_kw, 1) },
          { key: 'max_kw_p10', title: 'Max P10 (kW)', num: true, render: (r) => num(r.max_kw_p10, 1) },
          { key: 'energy_min_kwh', title: 'Energy min (kWh)', num: true, render: (r) => num(r.energy_min_kwh, 1) },
          { key: 'energy_max_kwh', title: 'Energy max (kWh)', num: true, render: (r) => num(r.energy_max_kwh, 1) },
          { key: 'committed_kw', title: 'Committed (kW)', num: true, render: (r) => num(r.committed_kw, 1) },
        ], xs.map((d, i) => ({ __attrs: { 'data-isp': flex.isp_starts[i] }, isp: d, baseline_kw: flex.baseline_kw[i], min_kw: flex.min_kw[i],
          max_kw: flex.max_kw[i], max_kw_p10: flex.max_kw_p10[i], energy_min_kwh: flex.energy_min_kwh[i],
          energy_max_kwh: flex.energy_max_kwh[i], committed_kw: Number.isFinite(schedule[i]) ? schedule[i] : null })), { id: 'flex-table' })))));
    const sessions = h('section', { class: 'card', id: 'pool-sessions' });
    box.append(sessions);
    await sessionsTable(sessions, pool, ctl);
  }

  function forecastChart(forecast, xs) {
    if (forecast instanceof Error) return errorBox(forecast, 'The forecast could not be loaded');
    if (!forecast.days_of_history) {
      return h('div', { class: 'empty', id: 'forecast-empty' }, 'No forecast yet: the pool has no completed sessions in the last 28 days. It appears once CPOs have sent a few days of sessions.');
    }
    return chart({ title: `Forecast: plugged-in cars (from ${forecast.days_of_history} days of history)`, xs, stepMs: ISP_MS,
      yUnit: 'cars (count)', id: 'chart-forecast', series: [
        { label: 'P10–P90 (cars)', kind: 'area', low: forecast.plugged_in_p10, high: forecast.plugged_in_p90, color: 'rgba(224,141,0,.2)' },
        { label: 'P50 (cars)', kind: 'step', values: forecast.plugged_in_p50, color: 'var(--c5)' },
        { label: 'arrivals P50 (cars per ISP)', kind: 'step', values: forecast.arrivals_p50, color: 'var(--c4)', dash: '4 3' },
      ] });
  }

  async function sessionsTable(box, pool, ctl) {
    const state = { cpo: '', location: '', v2g: '', sort: 'departure', offset: 0, limit: 50 };
    box.append(h('h2', {}, `Sessions behind ${pool}`));
    const form = h('form', { class: 'row', id: 'session-filters', onsubmit: (e) => { e.preventDefault(); state.offset = 0; load(); } });
    const cpoSel = h('select', { id: 'f-cpo' }, h('option', { value: '' }, 'all CPOs'));
    const loc = h('input', { id: 'f-location', type: 'search', placeholder: 'location id' });
    const v2g = h('select', { id: 'f-v2g' }, h('option', { value: '' }, 'all'), h('option', { value: 'true' }, 'V2G only'), h('option', { value: 'false' }, 'charge only'));
    const sort = h('select', { id: 'f-sort' }, [['departure', 'departure, earliest first'], ['-departure', 'departure, latest first'],
      ['-energy_needed_kwh', 'need, largest first'], ['-current_kw', 'current power, highest first'], ['location_id', 'location'], ['cpo', 'CPO']]
      .map(([v, t]) => h('option', { value: v }, t)));
    form.append(h('div', {}, h('label', { for: 'f-cpo' }, 'CPO'), cpoSel), h('div', {}, h('label', { for: 'f-location' }, 'Location'), loc),
      h('div', {}, h('label', { for: 'f-v2g' }, 'V2G'), v2g), h('div', {}, h('label', { for: 'f-sort' }, 'Sort'), sort),
      h('button', { type: 'submit' }, 'Apply'));
    const out = h('div', { id: 'sessions-out' });
    box.append(form, out);
    const load = async () => {
      state.cpo = cpoSel.value; state.location = loc.value.trim(); state.v2g = v2g.value; state.sort = sort.value;
      const p = new URLSearchParams({ sort: state.sort, limit: state.limit, offset: state.offset });
      if (state.cpo) p.set('cpo', state.cpo); if (state.location) p.set('location', state.location); if (state.v2g) p.set('v2g', state.v2g);
      out.replaceChildren(h('p', { class: 'muted' }, 'Loading sessions…'));
      let page;
      try { page = await api(`/api/v1/ui/pools/${encodeURIComponent(pool)}/sessions?${p}`, { signal: ctl.signal }); } catch (e) {
        if (e.name !== 'AbortError') out.replaceChildren(errorBox(e, 'Sessions could not be loaded')); return;
      }
      if (cpoSel.options.length === 1) for (const c of page.cpos) cpoSel.append(h('option', { value: c }, c));
      if (!page.total) {
        out.replaceChildren(h('div', { class: 'empty', id: 'sessions-empty' }, page.items.length || state.cpo || state.location || state.v2g
          ? 'No session matches these filters: clear a filter to see more.' : 'No car is plugged in in this pool now.'));
        return;
      }
      const times = page.items.map((x) => x.departure);
      out.replaceChildren(
        h('p', { class: 'small muted' }, 'Showing ', h('span', { id: 'sessions-range' }, `${state.offset + 1}–${state.offset + page.items.length}`),
          ' of ', h('strong', { id: 'sessions-total' }, page.total), ` sessions, as of ${fmtDateTime(page.at, true)}.`),
        h('div', { class: 'scroll' }, tableOf([
          { key: 'session_id', title: 'Session' },
          { key: 'cpo', title: 'CPO' },
          { key: 'location_id', title: 'Location / EVSE', render: (x) => `${x.location_id} / ${x.evse_uid}` },
          { key: 'plugged_in', title: `Plugged in (${S.tz})`, render: (x) => fmtDateTime(x.plugged_in) },
          { key: 'departure', title: `Departure (${zoneLabel(times)})`, render: (x) => fmtDateTime(x.departure) },
          { key: 'energy_needed_kwh', title: 'Need (kWh)', num: true, render: (x) => num(x.energy_needed_kwh, 1) },
          { key: 'need_source', title: 'Need from' },
          { key: 'delivered_kwh', title: 'Delivered (kWh)', num: true, render: (x) => num(x.delivered_kwh, 1) },
          { key: 'max_kw', title: 'Max (kW)', num: true, render: (x) => num(x.max_kw, 1) },
          { key: 'current_kw', title: 'Current (kW)', num: true, render: (x) => num(x.current_kw, 2) },
          { key: 'v2g', title: 'V2G', render: (x) => (x.v2g ? `yes (${num(x.discharge_kw, 1)} kW)` : 'no') },
        ], page.items.map((x) => ({ ...x, __attrs: { 'data-session': x.session_id } })), { id: 'sessions-table' })),
        h('div', { class: 'row' },
          h('button', { type: 'button', class: 'secondary', disabled: state.offset === 0 || null,
            onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, 'Previous'),
          h('button', { type: 'button', class: 'secondary', id: 'sessions-next', disabled: state.offset + state.limit >= page.total || null,
            onclick: () => { state.offset += state.limit; load(); } }, 'Next')));
    };
    await load();
  }

  /* ---------- Bids ---------- */
  function countdown(el, gateIso) {
    const gate = new Date(gateIso).getTime();
    const tick = () => {
      const left = gate - Date.now();
      el.textContent = duration(left);
      el.classList.toggle('closed', left <= 0);
    };
    tick(); return tick;
  }
  PAGES.bids = async (root, r) => {
    if (r.rest[0]) return bidDetail(root, r.rest[0]);
    root.append(h('h1', {}, 'Bids'));
    const ticks = [];
    every(1000, () => ticks.forEach((t) => t()));
    const build = h('section', { class: 'card' }, h('h2', {}, 'Build a draft'));
    const market = h('select', { id: 'b-market' }, ['day-ahead', 'afrr', 'congestion'].map((m) => h('option', { value: m }, m)));
    const pool = h('input', { id: 'b-pool', value: r.params.get('pool') || 'zone:NL', required: true });
    const tomorrow = localDay(Date.now() + 86400e3);
    const day = h('input', { id: 'b-day', type: 'date', value: tomorrow });
    const msg = h('div', { id: 'b-msg', role: 'status' });
    build.append(h('form', { class: 'row', onsubmit: async (e) => {
      e.preventDefault(); msg.replaceChildren(h('span', { class: 'muted' }, 'Building…'));
      const d = day.value; const body = { pool: pool.value.trim() };
      if (market.value === 'day-ahead') body.delivery_day = d;
      else { const [y, mo, dd] = d.split('-').map(Number); const s0 = localMidnightUtc(y, mo, dd); body.start = iso(s0); body.end = iso(localMidnightUtc(y, mo, dd + 1)); }
      try { const bid = await api(`/api/v1/bids/${market.value}/build`, { method: 'POST', body }); location.hash = `#/bids/${bid.id}`; } catch (err) {
        msg.replaceChildren(errorBox(err, 'The draft could not be built'));
      }
    } }, h('div', {}, h('label', { for: 'b-market' }, 'Market'), market), h('div', {}, h('label', { for: 'b-pool' }, 'Pool'), pool),
    h('div', {}, h('label', { for: 'b-day' }, `Delivery day (${S.tz})`), day), h('button', { type: 'submit' }, 'Build draft')), msg);
    const list = await api('/api/v1/bids?limit=200');
    const section = h('section', { class: 'card' }, h('h2', {}, 'Bids per market'));
    root.append(section, build);
    if (!list.length) { section.append(h('div', { class: 'empty', id: 'bids-empty' }, 'No bids yet: build a draft below.')); return; }
    for (const m of ['day-ahead', 'afrr', 'congestion']) {
      const rows = list.filter((b) => b.market === m);
      if (!rows.length) continue;
      section.append(h('h3', {}, m), tableOf([
        { key: 'pool', title: 'Pool', render: (b) => h('a', { href: `#/bids/${b.id}` }, b.pool) },
        { key: 'product', title: 'Product' },
        { key: 'period', title: `Delivery period (${S.tz})`, render: (b) => `${fmtDateTime(b.period_start)} – ${fmtClock(b.period_end)}` },
        { key: 'status', title: 'Status', render: (b) => statusPill(b.status) },
        { key: 'version', title: 'Version', num: true },
        { key: 'gate', title: 'Gate closure', render: (b) => fmtDateTime(b.gate_closure_at) },
        { key: 'left', title: 'Time to gate (hh:mm:ss)', render: (b) => { const el = h('span', { class: 'countdown' }); ticks.push(countdown(el, b.gate_closure_at)); return el; } },
        { key: 'updated_at', title: 'Updated', render: (b) => fmtDateTime(b.updated_at) },
      ], rows.map((b) => ({ ...b, __attrs: { 'data-bid': b.id } })), { class: 'bids-table' }));
    }
  };
  function localMidnightUtc(y, mo, d) {
    // the UTC instant of 00:00 local time in the market zone on y-mo-d
    let guess = Date.UTC(y, mo - 1, d);
    for (let k = 0; k < 2; k++) {
      const p = tzParts(new Date(guess));
      const shown = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute);
      guess -= shown - Date.UTC(y, mo - 1, d);
    }
    return guess;
  }
  function statusPill(st) { return h('span', { class: `pill ${st === 'draft' ? 'warn' : 'ok'}`, 'data-status': st }, st); }

  async function bidDetail(root, id) {
    const bid = await api(`/api/v1/bids/${encodeURIComponent(id)}`);
    const editable = bid.status === 'draft' && new Date(bid.gate_closure_at).getTime() > Date.now();
    root.append(h('p', {}, h('a', { href: '#/bids' }, '← all bids')),
      h('h1', {}, `${bid.market} bid for ${bid.pool}`));
    const cd = h('span', { class: 'countdown', id: 'gate-countdown' });
    const tick = countdown(cd, bid.gate_closure_at); every(1000, tick);
    root.append(h('section', { class: 'card', id: 'bid-head', 'data-bid': bid.id, 'data-version': bid.version },
      h('div', { class: 'stats' },
        stat('Status', statusPill(bid.status), 'bid-status'), stat('Version', bid.version, 'bid-version'),
        stat(`Gate closure (${S.tz})`, fmtDateTime(bid.gate_closure_at)), stat('Time to gate closure', cd),
        stat(`Delivery (${S.tz})`, `${fmtDateTime(bid.period_start)} – ${fmtClock(bid.period_end)}`),
        stat('Product', bid.product), stat('Created by', bid.created_by),
        stat('Submitted', bid.submitted_at ? fmtDateTime(bid.submitted_at) : '—'))));
    const msg = h('div', { id: 'bid-msg', role: 'status', 'aria-live': 'polite' });
    const actions = h('div', { class: 'row' },
      h('button', { type: 'button', id: 'bid-submit', disabled: !editable || null, onclick: async () => {
        if (!window.confirm(`Submit this ${bid.market} bid for ${bid.pool}? It cannot be edited afterwards.`)) return;
        msg.replaceChildren(h('span', { class: 'muted' }, 'Submitting…'));
        try { await api(`/api/v1/bids/${bid.id}/submit`, { method: 'POST' }); route(); } catch (e) { msg.replaceChildren(errorBox(e, 'Not submitted')); }
      } }, 'Submit bid'),
      ...({ 'day-ahead': ['json', 'csv'], afrr: ['xml'], congestion: ['json'] }[bid.market] || []).map((f) =>
        h('button', { type: 'button', class: 'secondary', id: `export-${f}`, onclick: async () => {
          try { const d = await download(`/api/v1/bids/${bid.id}/document?format=${f}`, `${bid.id}.${f}`); msg.replaceChildren(h('span', { class: 'muted' }, `Downloaded ${d.name} (${d.size} bytes).`)); } catch (e) { msg.replaceChildren(errorBox(e, 'Export failed')); }
        } }, f === 'xml' ? 'Export ENTSO-E XML' : `Export ${f.toUpperCase()}`)));
    root.append(h('section', { class: 'card' }, actions, msg,
      editable ? null : h('p', { class: 'muted small', id: 'bid-locked' }, bid.status !== 'draft' ? `This bid is ${bid.status}: it can no longer be edited.` : 'The gate has closed: this draft can no longer be edited or submitted.')));
    const editor = h('section', { class: 'card', id: 'bid-editor' });
    root.append(editor);
    const save = async (changes) => {
      msg.replaceChildren(h('span', { class: 'muted' }, 'Saving…'));
      try { await api(`/api/v1/bids/${bid.id}`, { method: 'PATCH', body: { expected_version: bid.version, ...changes } }); await route(); $('#bid-msg').replaceChildren(h('span', { class: 'pill ok', id: 'bid-saved' }, 'saved')); } catch (e) {
        msg.replaceChildren(errorBox(e, 'Not saved'));
      }
    };
    if (bid.market === 'day-ahead') dayAheadEditor(editor, bid, editable, save);
    else if (bid.market === 'afrr') afrrEditor(editor, bid, editable, save);
    else congestionEditor(editor, bid, editable, save);
    const audit = await api(`/api/v1/bids/${bid.id}/audit`);
    root.append(h('section', { class: 'card' }, h('h2', {}, 'Audit trail'), audit.length ? tableOf([
      { key: 'at', title: `When (${S.tz})`, render: (a) => fmtDateTime(a.at, true) },
      { key: 'action', title: 'Action' }, { key: 'actor_name', title: 'Who' },
      { key: 'change', title: 'Before → after', render: (a) => h('details', {}, h('summary', {}, summarize(a)), h('pre', {}, JSON.stringify({ before: a.before, after: a.after }, null, 1))) },
    ], audit, { id: 'audit-table' }) : h('div', { class: 'empty' }, 'No actions recorded yet.')));
  }
  function stat(k, v, id) { return h('div', { class: 'stat' }, h('div', { class: 'k' }, k), h('div', { class: 'v', id }, v)); }
  function summarize(a) {
    const keys = Object.keys(a.after || a.before || {});
    return keys.length ? keys.slice(0, 4).join(', ') + (keys.length > 4 ? ', …' : '') : 'details';
  }
  function dayAheadEditor(box, bid, editable, save) {
    const mtus = bid.content.mtus || [];
    const xs = mtus.map((m) => new Date(m.mtu_start));
    const atLow = mtus.map((m) => Math.max(...m.points.map((p) => p.demand_kw)));
    const atHigh = mtus.map((m) => Math.min(...m.points.map((p) => p.demand_kw)));
    box.append(h('h2', {}, 'Curves per MTU'),
      h('p', { class: 'muted small' }, 'Each MTU has a demand curve: price (EUR/MWh) and demand (kW), demand not increasing with price. Edit and save; the API checks the curve and says why it refuses one.'),
      chart({ title: 'Demand at the lowest and highest bid price', xs, stepMs: ISP_MS, yUnit: 'demand (kW)', id: 'chart-bid', series: [
        { label: 'demand at lowest price (kW)', kind: 'step', values: atLow, color: 'var(--c1)' },
        { label: 'demand at highest price (kW)', kind: 'step', values: atHigh, color: 'var(--c2)' }] }));
    const changed = new Set();
    const rows = mtus.map((m, i) => {
      const inputs = m.points.map((p, k) => h('span', {},
        h('input', { type: 'number', step: 'any', value: p.price_eur_per_mwh, disabled: !editable || null, 'aria-label': `MTU ${fmtClock(m.mtu_start)} point ${k + 1} price (EUR/MWh)`, 'data-field': 'price', 'data-mtu': i, 'data-k': k, oninput: () => changed.add(i) }), ' €/MWh ',
        h('input', { type: 'number', step: 'any', value: p.demand_kw, disabled: !editable || null, 'aria-label': `MTU ${fmtClock(m.mtu_start)} point ${k + 1} demand (kW)`, 'data-field': 'demand', 'data-mtu': i, 'data-k': k, oninput: () => changed.add(i) }), ' kW'));
      return h('tr', { 'data-mtu-start': m.mtu_start }, h('td', {}, fmtDateTime(m.mtu_start)), h('td', { class: 'points' }, inputs));
    });
    const table = h('table', { id: 'mtu-table' }, h('thead', {}, h('tr', {}, h('th', {}, `MTU start (${zoneLabel(xs)})`), h('th', {}, 'Points: price (EUR/MWh), demand (kW)'))), h('tbody', {}, rows));
    box.append(h('div', { class: 'scroll' }, table));
    if (editable) {
      box.append(h('div', { class: 'row', style: 'margin-top:.5rem' }, h('button', { type: 'button', id: 'bid-save', onclick: () => {
        if (!changed.size) { $('#bid-msg').replaceChildren(h('span', { class: 'muted' }, 'Nothing changed.')); return; }
        const out = [...changed].sort((a, b) => a - b).map((i) => ({ mtu_start: mtus[i].mtu_start, points: mtus[i].points.map((_, k) => ({
          price_eur_per_mwh: Number(table.querySelector(`input[data-field=price][data-mtu="${i}"][data-k="${k}"]`).value),
          demand_kw: Number(table.querySelector(`input[data-field=demand][data-mtu="${i}"][data-k="${k}"]`).value) })) }));
        save({ mtus: out });
      } }, 'Save changes')));
    }
  }
  function afrrEditor(box, bid, editable, save) {
    const cap = bid.content.capacity || []; const en = bid.content.energy || [];
    box.append(h('h2', {}, 'aFRR bids'), h('p', { class: 'muted small' }, 'Volumes in kW (the ENTSO-E export converts to MW); a volume of 0 removes a bid.'));
    const field = (id, name, value, label) => h('input', { type: 'number', step: 'any', value, disabled: !editable || null, 'data-bid-id': id, 'data-field': name, 'aria-label': label });
    box.append(h('h3', {}, 'Capacity'), cap.length ? h('div', { class: 'scroll' }, tableOf([
      { key: 'direction', title: 'Direction' },
      { key: 'product_start', title: `Product start (${S.tz})`, render: (c) => `${fmtDateTime(c.product_start)} (${c.product_hours} h)` },
      { key: 'capacity_kw', title: 'Capacity (kW)', render: (c) => field(c.bid_id, 'capacity_kw', c.capacity_kw, `capacity ${c.bid_id} (kW)`) },
      { key: 'cp', title: 'Capacity price (EUR/MW/h)', render: (c) => field(c.bid_id, 'capacity_price_eur_per_mw_per_h', c.capacity_price_eur_per_mw_per_h, `capacity price ${c.bid_id} (EUR/MW/h)`) },
      { key: 'ep', title: 'Energy price (EUR/MWh)', render: (c) => field(c.bid_id, 'energy_price_eur_per_mwh', c.energy_price_eur_per_mwh, `energy price ${c.bid_id} (EUR/MWh)`) },
    ], cap, { id: 'capacity-table' })) : h('div', { class: 'empty' }, 'No capacity bids in this draft.'));
    box.append(h('h3', {}, 'Energy'), en.length ? h('div', { class: 'scroll' }, tableOf([
      { key: 'direction', title: 'Direction' },
      { key: 'mtu_start', title: `MTU start (${S.tz})`, render: (e) => fmtDateTime(e.mtu_start) },
      { key: 'volume_kw', title: 'Volume (kW)', render: (e) => field(e.bid_id, 'volume_kw', e.volume_kw, `volume ${e.bid_id} (kW)`) },
      { key: 'price', title: 'Price (EUR/MWh)', render: (e) => field(e.bid_id, 'price_eur_per_mwh', e.price_eur_per_mwh, `price ${e.bid_id} (EUR/MWh)`) },
    ], en, { id: 'energy-table' })) : h('div', { class: 'empty' }, 'No energy bids in this draft.'));
    if (editable) {
      box.append(h('button', { type: 'button', id: 'bid-save', onclick: () => {
        const changes = { capacity: [], energy: [] };
        for (const c of cap) {
          const entry = { bid_id: c.bid_id }; let any = false;
          for (const f of ['capacity_kw', 'capacity_price_eur_per_mw_per_h', 'energy_price_eur_per_mwh']) {
            const v = Number(box.querySelector(`input[data-bid-id="${c.bid_id}"][data-field="${f}"]`).value);
            if (v !== c[f]) { entry[f] = v; any = true; }
          }
          if (any) changes.capacity.push(entry);
        }
        for (const e of en) {
          const entry = { bid_id: e.bid_id }; let any = false;
          for (const f of ['volume_kw', 'price_eur_per_mwh']) {
            const v = Number(box.querySelector(`input[data-bid-id="${e.bid_id}"][data-field="${f}"]`).value);
            if (v !== e[f]) { entry[f] = v; any = true; }
          }
          if (any) changes.energy.push(entry);
        }
        if (!changes.capacity.length && !changes.energy.length) { $('#bid-msg').replaceChildren(h('span', { class: 'muted' }, 'Nothing changed.')); return; }
        save(changes);
      } }, 'Save changes'));
    }
  }
  function congestionEditor(box, bid, editable, save) {
    const isps = bid.content.isps || [];
    box.append(h('h2', {}, 'Offered reduction per ISP'));
    const price = h('input', { type: 'number', step: 'any', id: 'c-price', value: bid.content.price_eur_per_mwh, disabled: !editable || null });
    box.append(h('div', {}, h('label', { for: 'c-price' }, 'Price (EUR/MWh)'), price));
    box.append(h('div', { class: 'scroll' }, tableOf([
      { key: 'isp_start', title: `ISP start (${S.tz})`, render: (x) => fmtDateTime(x.isp_start) },
      { key: 'reduction_kw', title: 'Reduction (kW)', render: (x) => h('input', { type: 'number', step: 'any', value: x.reduction_kw, 'data-isp': x.isp_start, disabled: !editable || null, 'aria-label': `reduction at ${fmtClock(x.isp_start)} (kW)` }) },
    ], isps, { id: 'isp-table' })));
    if (editable) {
      box.append(h('button', { type: 'button', id: 'bid-save', onclick: () => {
        const changes = { isps: [] };
        for (const x of isps) {
          const v = Number(box.querySelector(`input[data-isp="${x.isp_start}"]`).value);
          if (v !== x.reduction_kw) changes.isps.push({ isp_start: x.isp_start, reduction_kw: v });
        }
        if (Number(price.value) !== bid.content.price_eur_per_mwh) changes.price_eur_per_mwh = Number(price.value);
        if (!changes.isps.length) delete changes.isps;
        save(changes);
      } }, 'Save changes'));
    }
  }

  /* ---------- Activations (live) ---------- */
  async function streamEvents(path, onEvent, onState, signal) {
    // EventSource cannot send the Authorization header; read the text/event-stream with fetch instead.
    let backoff = 1000;
    while (!signal.aborted) {
      try {
        const res = await api(path, { raw: true, signal });
        onState('live');
        backoff = 1000;
        const reader = res.body.getReader(); const dec = new TextDecoder(); let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
            let event = 'message'; const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
            }
            if (data.length) onEvent(event, JSON.parse(data.join('\n')));
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        onState(`disconnected (${e.message}); retrying`);
      }
      if (signal.aborted) return;
      onState('reconnecting…');
      await new Promise((ok) => setTimeout(ok, backoff)); backoff = Math.min(backoff * 2, 10000);
    }
  }
  PAGES.activations = async (root, r) => {
    root.append(h('h1', {}, 'Activations (live)'));
    const live = h('div', { id: 'live' });
    const ctl = { abort: () => {} };
    const start = (pool) => {
      ctl.abort();
      const ac = new AbortController(); ctl.abort = () => ac.abort();
      onCleanup(() => ac.abort());
      liveView(live, pool, ac.signal);
    };
    const { pool } = await poolPicker(root, r.params, start, 'Pool');
    root.append(live);
    if (pool) start(pool);
  };
  function liveView(box, pool, signal) {
    const dot = h('span', { class: 'live-dot', 'aria-hidden': 'true' });
    const state = h('span', { id: 'live-state' }, 'connecting…');
    const updated = h('span', { id: 'live-updated' }, '—');
    const problem = h('p', { id: 'live-problem', class: 'error', role: 'alert', hidden: true });
    const body = h('div', { id: 'live-body' }, h('p', { class: 'muted' }, 'Waiting for the first update…'));
    box.replaceChildren(h('section', { class: 'card', 'data-pool': pool },
      h('p', { class: 'small' }, dot, ' ', state, ' · last update ', updated, ` · pool `, h('strong', {}, pool), ' · updates every 2 s'),
      problem, body));
    streamEvents(`/api/v1/live/activations?pool=${encodeURIComponent(pool)}&interval_s=2`, (event, data) => {
      if (event === 'problem') { problem.hidden = false; problem.textContent = `The last update failed (${data.message}); the next one follows in 2 s.`; return; }
      problem.hidden = true;
      updated.textContent = fmtDateTime(data.at, true);
      box.dataset.at = data.at;
      renderLive(body, data);
    }, (st) => { state.textContent = st; dot.classList.toggle('on', st === 'live'); }, signal);
  }
  function renderLive(body, d) {
    const sp = d.setpoint; const last = d.steps[d.steps.length - 1];
    const xs = d.steps.map((x) => new Date(x.at));
    const parts = [
      h('div', { class: 'stats' },
        stat('Latest setpoint (seq)', sp ? sp.seq : '—', 'live-seq'),
        stat('Setpoint applied (MW)', sp ? num(sp.setpoint_mw, 3) : '—', 'live-setpoint'),
        stat('Requested (MW)', sp ? num(sp.requested_mw, 3) + (sp.clipped ? ' (clipped)' : '') : '—', 'live-requested'),
        stat('Awarded up / down (MW)', sp ? `${num(sp.capacity_up_mw, 3)} / ${num(sp.capacity_down_mw, 3)}` : '—'),
        stat('Supplied, last step (MW)', last ? num(last.supplied_mw, 3) : '—', 'live-supplied'),
        stat('Measured load, last step (kW)', last ? num(last.measured_kw, 1) : '—', 'live-measured'),
        stat('Baseline (kW)', last ? num(last.baseline_kw, 1) : '—'),
        stat(`Steps within band (last ${Math.round(d.window_s / 60)} min)`, d.within_band_share === null ? '—' : `${num(100 * d.within_band_share, 0)} %`, 'live-share')),
    ];
    if (d.steps.length) {
      parts.push(chart({ title: 'aFRR: setpoint, tolerance band and supplied response (positive = up = less consumption)', xs, yUnit: 'aFRR power (MW)',
        id: 'chart-afrr', series: [
          { label: 'tolerance band: ramped setpoint ± 5 % (MW)', kind: 'area', low: d.steps.map((x) => x.band_low_mw), high: d.steps.map((x) => x.band_high_mw), color: 'rgba(11,92,173,.18)' },
          { label: 'setpoint applied (MW)', kind: 'line', values: d.steps.map((x) => x.requested_mw), color: 'var(--c1)', dash: '5 3' },
          { label: 'supplied (MW)', kind: 'line', values: d.steps.map((x) => x.supplied_mw), color: 'var(--c2)' }] }));
      parts.push(chart({ title: 'Pool consumption: measured, target and baseline', xs, yUnit: 'power (kW)', height: 200, id: 'chart-load', series: [
        { label: 'baseline (kW)', kind: 'line', values: d.steps.map((x) => x.baseline_kw), color: 'var(--c4)', dash: '4 3' },
        { label: 'target (kW)', kind: 'line', values: d.steps.map((x) => x.target_kw), color: 'var(--c3)', dash: '2 2' },
        { label: 'measured (kW)', kind: 'line', values: d.steps.map((x) => x.measured_kw), color: 'var(--c1)' }] }));
    } else {
      parts.push(h('div', { class: 'empty', id: 'live-empty' }, `No dispatch steps for this pool in the last ${Math.round(d.window_s / 60)} minutes. `,
        'Steps appear when the dispatcher runs the pool (it needs plugged-in sessions) and when the TSO sends setpoints to POST /api/v1/market/afrr/setpoints.'));
    }
    parts.push(h('div', { class: 'grid2' },
      h('div', {}, h('h2', {}, 'Congestion limits against load (current ISP)'), d.limits.length ? tableOf([
        { key: 'pool', title: 'Pool' }, { key: 'kind', title: 'Kind' },
        { key: 'limit_kw', title: 'Limit (kW)', num: true, render: (x) => num(x.limit_kw, 1) },
        { key: 'load_kw', title: 'Load now (kW)', num: true, render: (x) => num(x.load_kw, 1) },
        { key: 'headroom_kw', title: 'Headroom (kW)', num: true, render: (x) => h('span', { class: x.headroom_kw !== null && x.headroom_kw < 0 ? 'flag' : null }, num(x.headroom_kw, 1)) },
      ], d.limits, { id: 'limits-table' }) : h('div', { class: 'empty', id: 'limits-empty' }, 'No congestion limit or capacity applies to this pool now.')),
      h('div', {}, h('h2', {}, `Charging-profile outcomes per CPO (last ${Math.round(d.window_s / 60)} min)`), d.outcomes.length ? tableOf([
        { key: 'cpo', title: 'CPO' },
        { key: 'total', title: 'Profiles (count)', num: true },
        { key: 'by_status', title: 'By outcome (count)', render: (x) => Object.entries(x.by_status).map(([k, v]) => `${k}: ${v}`).join(', ') },
        { key: 'last_at', title: `Last (${S.tz})`, render: (x) => (x.last_at ? fmtClock(x.last_at, true) : '—') },
        { key: 'last_message', title: 'Last message', render: (x) => x.last_message || '—' },
      ], d.outcomes.map((x) => ({ ...x, __attrs: { 'data-cpo': x.cpo } })), { id: 'outcomes-table' }) : h('div', { class: 'empty', id: 'outcomes-empty' }, 'No charging profiles were sent in the window.'))));
    body.replaceChildren(...parts);
  }

  /* ---------- Settlement ---------- */
  PAGES.settlement = async (root, r) => {
    root.append(h('h1', {}, 'Settlement'));
    const day = r.params.get('day') || localDay(Date.now() - 86400e3);
    let spec;
    try { spec = await fetch('/openapi.json').then((x) => x.json()); } catch (_) { spec = { paths: {} }; }
    const ops = Object.entries(spec.paths || {}).filter(([p, v]) => p.startsWith('/api/v1/settlement') && v.get);
    if (!ops.length) {
      root.append(h('div', { class: 'empty', id: 'settlement-empty' },
        h('p', {}, h('strong', {}, 'Settlement is not available on this service yet.')),
        h('p', {}, 'This page fills in from the settlement API (/api/v1/settlement/…) as soon as the service offers it: requested versus delivered per ISP, payments and penalties, per-session attribution, reconciliation flags and a CSV download.'),
        h('p', {}, 'What to do: update the service to a version with the settlement API, then reload this page.')));
      return;
    }
    const pools = await api('/api/v1/portfolio/pools').catch(() => []);
    const poolSel = h('select', { id: 's-pool' }, h('option', { value: '' }, 'all pools'), pools.map((p) => h('option', { value: p.pool, selected: p.pool === r.params.get('pool') || null }, p.pool)));
    const dayIn = h('input', { id: 's-day', type: 'date', value: day });
    const out = h('div', { id: 'settlement-out' });
    root.append(h('section', { class: 'card' }, h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); r.params.set('day', dayIn.value); if (poolSel.value) r.params.set('pool', poolSel.value); else r.params.delete('pool'); setParams(r.params); load(); } },
      h('div', {}, h('label', { for: 's-day' }, `Delivery day (${S.tz})`), dayIn), h('div', {}, h('label', { for: 's-pool' }, 'Pool'), poolSel), h('button', { type: 'submit' }, 'Show'))), out);
    const load = async () => {
      out.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
      const filled = ops.flatMap(([path, v]) => expandPath(spec, path, v.get, dayIn.value, poolSel.value));
      if (!filled.length) { out.replaceChildren(h('div', { class: 'empty' }, 'The settlement API has no read this page understands (by day and pool).')); return; }
      const parts = [];
      for (const f of filled) {
        const csv = /csv/i.test(JSON.stringify(f.op.responses || {})) || (f.op.parameters || []).some((p) => p.name === 'format');
        let data;
        try { data = await api(f.url); } catch (e) { parts.push(h('section', { class: 'card' }, h('h2', {}, f.title), e.status === 404 ? h('div', { class: 'empty' }, `Nothing settled for ${dayIn.value}${poolSel.value ? ' and ' + poolSel.value : ''}: ${e.message}. Settlement runs after the delivery day; choose an earlier day.`) : errorBox(e, 'Could not load'))); continue; }
        const sec = h('section', { class: 'card settlement-part', 'data-path': f.path, 'data-url': f.url }, h('h2', {}, f.title));
        if (csv) {
          const csvUrl = f.url + (f.url.includes('?') ? '&' : '?') + 'format=csv';
          sec.append(h('button', { type: 'button', class: 'secondary settlement-csv', onclick: () => download(csvUrl, `settlement-${dayIn.value}.csv`) }, 'Download CSV'));
        }
        renderJson(sec, data);
        parts.push(sec);
      }
      out.replaceChildren(...parts);
    };
    await load();
  };
  function resolve(spec, schema) {
    let x = schema || {};
    for (let k = 0; k < 5 && x.$ref; k++) x = x.$ref.split('/').slice(1).reduce((o, key) => (o || {})[key], spec) || {};
    if (!x.enum && Array.isArray(x.anyOf)) x = x.anyOf.map((y) => resolve(spec, y)).find((y) => y.enum) || x;
    return x;
  }
  function expandPath(spec, path, op, day, pool) {
    // JSON reads only (not the PNG plot); a path parameter with an enum (e.g. the table kind) gives one part each
    const json = Object.values(op.responses || {}).some((r) => r.content && r.content['application/json']);
    if (!json || /\.(png|svg)$/.test(path)) return [];
    const enums = (op.parameters || []).filter((p) => p.in === 'path' && !/day|date|pool/.test(p.name)).map((p) => [p.name, resolve(spec, p.schema).enum]);
    if (enums.some(([, e]) => !e)) return [];
    let variants = [{ path, title: op.summary || path }];
    for (const [name, values] of enums) {
      variants = variants.flatMap((v) => values.map((val) => ({ path: v.path.replace(`{${name}}`, encodeURIComponent(val)), title: `${op.summary || path}: ${val}` })));
    }
    return variants.map((v) => ({ ...v, op, url: fillPath(v.path, op, day, pool) })).filter((v) => v.url);
  }
  function fillPath(path, op, day, pool) {
    let url = path; const q = new URLSearchParams();
    for (const p of op.parameters || []) {
      const val = /day|date/.test(p.name) ? day : /pool/.test(p.name) ? pool : null;
      if (p.in === 'path' && !url.includes(`{${p.name}}`)) continue;
      if (p.in === 'path') { if (!val) return null; url = url.replace(`{${p.name}}`, encodeURIComponent(val)); } else if (p.in === 'query' && val) q.set(p.name, val);
      else if (p.in === 'query' && p.required) return null;
    }
    const qs = q.toString();
    return qs ? `${url}?${qs}` : url;
  }
  const UNIT_SUFFIX = /_(kw|kwh|mw|mwh|eur|eur_per_mwh|pct|s)$/;
  function unitOf(key) {
    const m = UNIT_SUFFIX.exec(key);
    return m ? ({ kw: 'kW', kwh: 'kWh', mw: 'MW', mwh: 'MWh', eur: 'EUR', eur_per_mwh: 'EUR/MWh', pct: '%', s: 's' })[m[1]] : null;
  }
  function renderJson(box, data) {
    const rows = Array.isArray(data) ? data : null;
    if (rows) {
      if (!rows.length) { box.append(h('div', { class: 'empty' }, 'No rows for this selection.')); return; }
      if (typeof rows[0] !== 'object') { box.append(h('p', {}, rows.join(', '))); return; }
      const keys = Object.keys(rows[0]).filter((k) => typeof rows[0][k] !== 'object' || rows[0][k] === null);
      box.append(h('div', { class: 'scroll' }, tableOf(keys.map((k) => ({ key: k, num: typeof rows[0][k] === 'number',
        title: unitOf(k) ? `${k.replace(UNIT_SUFFIX, '')} (${unitOf(k)})` : /(_at|start|end)$/.test(k) ? `${k} (${S.tz})` : k,
        render: (x) => cell(k, x[k]) })), rows)));
      return;
    }
    if (data && typeof data === 'object') {
      const scalars = Object.entries(data).filter(([, v]) => v === null || typeof v !== 'object');
      if (scalars.length) box.append(h('div', { class: 'stats' }, scalars.map(([k, v]) => stat(unitOf(k) ? `${k} (${unitOf(k)})` : k, cell(k, v)))));
      for (const [k, v] of Object.entries(data)) if (v && typeof v === 'object') { box.append(h('h3', {}, k)); renderJson(box, v); }
      return;
    }
    box.append(h('p', {}, String(data)));
  }
  function cell(k, v) {
    if (v === null || v === undefined) return '—';
    if (typeof v === 'boolean') return /flag|dispute|mismatch/.test(k) && v ? h('span', { class: 'flag' }, 'yes') : v ? 'yes' : 'no';
    if (typeof v === 'number') return num(v, /eur/.test(k) ? 2 : 3);
    if (typeof v === 'string' && /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/.test(v)) return fmtDateTime(v.replace(' ', 'T'));
    return String(v);
  }

  /* ---------- CPO connections (admin) ---------- */
  PAGES.connections = async (root) => {
    root.append(h('h1', {}, 'CPO connections'));
    const [conns, activity] = await Promise.all([api('/api/v1/ocpi/connections'), api('/api/v1/ui/connections/activity').catch(() => [])]);
    const byId = new Map(activity.map((a) => [a.connection_id, a]));
    const msg = h('div', { id: 'conn-msg', role: 'status' });
    const sec = h('section', { class: 'card' }, msg);
    root.append(sec);
    if (!conns.length) {
      sec.append(h('div', { class: 'empty', id: 'connections-empty' }, 'No CPO connections yet. Invite a CPO: POST /api/v1/ocpi/connections (or `vpp ocpi invite`), and hand it the token A and our versions URL.'));
    } else {
      sec.append(h('div', { class: 'scroll', style: 'max-height:none' }, tableOf([
        { key: 'name', title: 'CPO' },
        { key: 'status', title: 'Status', render: (c) => h('span', { class: `pill ${['connected', 'registered'].includes(c.status) ? 'ok' : c.status === 'failed' ? 'bad' : 'warn'}` }, c.status) },
        { key: 'roles', title: 'Parties', render: (c) => c.roles.map((x) => `${x.role} ${x.country_code}/${x.party_id}`).join(', ') || '—' },
        { key: 'version', title: 'OCPI', render: (c) => c.version || '—' },
        { key: 'registered_at', title: `Registered (${S.tz})`, render: (c) => fmtDateTime(c.registered_at) },
        { key: 'last_push', title: `Last push received (${S.tz})`, render: (c) => fmtDateTime((byId.get(c.id) || {}).last_push_at) },
        { key: 'sessions_pulled_at', title: `Last pull (${S.tz})`, render: (c) => fmtDateTime(c.sessions_pulled_at) },
        { key: 'active', title: 'Active sessions (count)', num: true, render: (c) => (byId.get(c.id) || {}).active_sessions ?? '—' },
        { key: 'errors', title: 'Profile errors, 24 h (count)', num: true, render: (c) => { const a = byId.get(c.id); return a ? h('span', { class: a.profile_errors_24h ? 'flag' : null }, a.profile_errors_24h) : '—'; } },
        { key: 'endpoints', title: 'Endpoints (count)', num: true, render: (c) => c.endpoints.length },
        { key: 'actions', title: 'Actions', render: (c) => h('button', { type: 'button', class: 'secondary', onclick: async () => {
          try { await api(`/api/v1/ocpi/connections/${c.id}/pull`, { method: 'POST' }); msg.replaceChildren(h('span', { class: 'pill ok' }, `pull of ${c.name} queued`)); } catch (e) { msg.replaceChildren(errorBox(e, 'Pull not queued')); }
        } }, 'Pull now') },
      ], conns.map((c) => ({ ...c, __attrs: { 'data-connection': c.id } })), { id: 'connections-table' })));
    }
    root.append(h('section', { class: 'card notice', id: 'rotation-note' }, h('h2', {}, 'Token rotation'),
      h('p', {}, 'The service has no endpoint to rotate a connection\'s credentials from our side yet (it would be POST /api/v1/ocpi/connections/{id}/rotate, issuing a new token B and sending it with an OCPI credentials PUT). ',
        'A CPO can rotate at any time by calling PUT on our OCPI credentials endpoint with its new token; the last push and status above show when that happened.')));
  };

  /* ---------- start ---------- */
  $('#signin-form').addEventListener('submit', (e) => { e.preventDefault(); signIn($('#api-key').value.trim()); $('#api-key').value = ''; });
  $('#sign-out').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', () => { route(); $('#main').focus(); });
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved); else showSignin();
})();
