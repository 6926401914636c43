/*
 * app.js - the events dashboard: every view is SQL through POST /query, the
 * live tail is GET /tail (Server-Sent Events). No framework; uPlot draws.
 */
'use strict';

const $ = (id) => document.getElementById(id);
const state = { view: 'overview', token: sessionStorage.getItem('events-token') || '', charts: {},
  rpcFilter: null, tail: null, tailBuf: [], tailPaused: false, loaded: {} };
const TAIL_MAX = 500;
const COLORS = ['#4fb3ff', '#4cd98c', '#ffc857', '#ff6b6b', '#c792ea', '#7fdbca', '#f78c6c', '#82aaff',
  '#c3e88d', '#ffcb6b', '#89ddff', '#f07178'];

/* ---- talking to the server ------------------------------------------------- */

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h.Authorization = 'Bearer ' + state.token;
  return h;
}

class AuthError extends Error {}

function askToken(message) {
  $('auth').hidden = false;
  $('auth-msg').textContent = message;
  $('auth-token').focus();
}

async function query(sql, format) {
  const r = await fetch('/query' + (format ? '?format=' + format : ''), {
    method: 'POST', headers: headers({ 'Content-Type': 'application/json' }),
    body: JSON.stringify({ sql }) });
  if (r.status === 401 || r.status === 403) {
    const j = await r.json().catch(() => ({}));
    askToken(state.token ? 'The server refused this token: ' + (j.error || r.status) : 'This server needs a token.');
    throw new AuthError(j.error || 'unauthorized');
  }
  if (format) {
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || 'HTTP ' + r.status);
    return r.blob();
  }
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || 'HTTP ' + r.status);
  return j;
}

async function metrics() {
  const r = await fetch('/metrics', { headers: headers() });
  if (!r.ok) return {};
  const out = {};
  for (const line of (await r.text()).split('\n')) {
    const m = /^(events_[a-z_]+) ([0-9.e+]+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/* ---- time range ------------------------------------------------------------
 *
 * The default: when the dashboard first loads a view with a range, it asks for the
 * first event of the last hour. If the events there began less than FIT_MAX ago (a
 * new server, or one that was idle), the range starts at that event ('fit': "since
 * 14:03:27 UTC (fits the data)") and grows with every refresh; otherwise it stays
 * the last hour. A range the user picks is kept.
 */

const RANGES = { '15m': 15 * 60e3, '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };
const FIT_MAX = 50 * 60e3;

function range() {
  const sel = $('range-sel').value;
  if (sel === 'custom') {
    const f = Date.parse($('from').value + 'Z'), t = Date.parse($('to').value + 'Z');
    if (!isNaN(f) && !isNaN(t) && t > f) return { lo: f, hi: t };
  }
  if (sel === 'fit' && state.fitFrom != null) {
    const hi = Date.now() + 10e3, ms = bucketFor(hi - state.fitFrom).ms;
    return { lo: Math.min(Math.floor(state.fitFrom / ms) * ms, hi - 70e3), hi };
  }
  const hi = Date.now() + 60e3;
  return { lo: hi - 60e3 - (RANGES[sel] || 3600e3), hi };
}

/* Once: the range that fits the data, if the last hour is not it (see above). */
async function chooseRange() {
  if (state.rangeChosen) return;
  const r = await query('SELECT epoch_ms(min(ts)) FROM events_between(now() - INTERVAL 1 HOUR, now() + INTERVAL 1 MINUTE)');
  if (state.rangeChosen) return; /* the user picked one meanwhile */
  state.rangeChosen = true;
  const first = r.rows.length ? r.rows[0][0] : null;
  if (first == null || Date.now() - first > FIT_MAX) return;
  state.fitFrom = Number(first);
  const o = $('range-fit');
  o.textContent = 'since ' + new Date(state.fitFrom).toISOString().slice(11, 19) + ' UTC (fits the data)';
  o.hidden = false;
  $('range-sel').value = 'fit';
}

function ts(ms) { return "TIMESTAMP '" + new Date(ms).toISOString().replace('T', ' ').replace('Z', '') + "'"; }
function between() { const r = range(); return 'events_between(' + ts(r.lo) + ', ' + ts(r.hi) + ')'; }
/* the quarantine's records received in range: bounds on receivedAt read only its hours */
function receivedIn() { const r = range(); return 'receivedAt >= ' + ts(r.lo) + ' AND receivedAt < ' + ts(r.hi); }
/* a few hundred points at most: a chart is about a thousand pixels wide */
function bucketFor(span) {
  if (span <= 16 * 60e3) return { sql: "INTERVAL '10 seconds'", name: '10 seconds', ms: 10e3 };
  if (span <= 5 * 3600e3) return { sql: "INTERVAL '1 minute'", name: 'minute', ms: 60e3 };
  if (span <= 26 * 3600e3) return { sql: "INTERVAL '5 minutes'", name: '5 minutes', ms: 300e3 };
  return { sql: "INTERVAL '1 hour'", name: 'hour', ms: 3600e3 };
}
function bucket() { const r = range(); return bucketFor(r.hi - r.lo); }
/* events per bucket and key (type or collection): from event_counts_between, whose whole hours
 * compaction has counted per minute already (docs/query.md), for buckets of minutes; else rows */
function perBucket(b, key, where) {
  const r = range();
  if (b.ms < 60e3)
    return 'SELECT epoch_ms(time_bucket(' + b.sql + ', ts)) AS t, ' + key + ', count(*) AS n FROM ' + between() +
      where + ' GROUP BY ALL ORDER BY t';
  return 'SELECT epoch_ms(time_bucket(' + b.sql + ', minute)) AS t, ' + key + ', sum(n)::BIGINT AS n ' +
    'FROM event_counts_between(' + ts(r.lo) + ', ' + ts(r.hi) + ')' + where + ' GROUP BY ALL ORDER BY t';
}
function str(s) { return "'" + String(s).replace(/'/g, "''") + "'"; }

/* ---- rendering helpers ----------------------------------------------------- */

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
}
const fmt = {
  int: (v) => v == null ? '' : Number(v).toLocaleString('en-US'),
  ms: (v) => v == null ? '' : Number(v).toFixed(2),
  pct: (v) => v == null ? '' : (100 * v).toFixed(1) + '%',
  time: (v) => v == null ? '' : String(v).replace('T', ' ').replace('Z', ''),
  json: (v) => v == null ? '' : typeof v === 'string' ? v : JSON.stringify(v),
};

/* A table from column specs {title, key (row index), fmt, cls}. */
function table(el, cols, rows, opts) {
  opts = opts || {};
  if (!rows.length) { el.innerHTML = '<tr><td class="empty">nothing in this range</td></tr>'; return; }
  let h = '<thead><tr>' + cols.map((c) => '<th>' + esc(c.title) + '</th>').join('') + '</tr></thead><tbody>';
  rows.forEach((r, i) => {
    h += '<tr data-i="' + i + '"' + (opts.click ? ' class="click"' : '') + '>' + cols.map((c) => {
      const v = r[c.key];
      const s = c.html ? c.html(v, r) : esc((c.fmt || fmt.json)(v));
      return '<td' + (c.cls ? ' class="' + c.cls + '"' : '') + '>' + s + '</td>';
    }).join('') + '</tr>';
  });
  el.innerHTML = h + '</tbody>';
  if (opts.click) el.querySelectorAll('tbody tr').forEach((tr) => {
    tr.onclick = () => opts.click(rows[Number(tr.dataset.i)], tr);
  });
}

/* A time chart: x in ms, series {label, values}; stacked adds them up (areas). */
function chart(key, el, xs, series, opts) {
  opts = opts || {};
  if (state.charts[key]) { state.charts[key].destroy(); delete state.charts[key]; }
  el.innerHTML = '';
  if (!xs.length) { el.innerHTML = '<div class="empty">nothing in this range</div>'; return; }
  let data = series.map((s) => s.values);
  if (opts.stacked) {
    const acc = xs.map(() => 0);
    data = data.map((vals) => vals.map((v, i) => (acc[i] += v || 0)));
    data.reverse(); /* the tallest first, so that each lower area is drawn over it */
    series = series.slice().reverse();
  }
  const width = Math.max(300, el.clientWidth - 12);
  state.charts[key] = new uPlot({
    width, height: 260,
    series: [{}].concat(series.map((s, i) => {
      const c = COLORS[(opts.stacked ? series.length - 1 - i : i) % COLORS.length];
      return { label: s.label, stroke: c, width: 1.5, fill: opts.stacked ? c + '99' : undefined,
        value: (u, v) => v == null ? '-' : (opts.unit === 'ms' ? v.toFixed(2) + ' ms' : v) };
    })),
    axes: [{ stroke: '#8592a3', grid: { stroke: '#263040' } },
      { stroke: '#8592a3', grid: { stroke: '#263040' }, size: 60 }],
    scales: { x: { time: true } },
    legend: { live: true },
  }, [xs.map((x) => x / 1000)].concat(data), el);
}

/* Rows (t, key, n) into one x axis (every bucket of the range) and a series per key, 0 where none. */
function pivot(rows) {
  const r = range(), ms = bucket().ms, xs = [];
  if (rows.length) for (let t = Math.floor(r.lo / ms) * ms; t < r.hi; t += ms) xs.push(t);
  for (const row of rows) if (xs.length && (row[0] < xs[0] || row[0] > xs[xs.length - 1])) xs.push(row[0]);
  xs.sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const keys = [...new Set(rows.map((r) => r[1] == null ? '(none)' : r[1]))];
  const totals = new Map(keys.map((k) => [k, 0]));
  const series = new Map(keys.map((k) => [k, xs.map(() => 0)]));
  for (const r of rows) {
    const k = r[1] == null ? '(none)' : r[1];
    series.get(k)[at.get(r[0])] = Number(r[2]);
    totals.set(k, totals.get(k) + Number(r[2]));
  }
  keys.sort((a, b) => totals.get(b) - totals.get(a));
  return { xs, series: keys.map((k) => ({ label: k, values: series.get(k) })) };
}

/* ---- views ------------------------------------------------------------------ */

const views = {
  async overview() {
    const b = bucket();
    $('ov-bucket').textContent = b.name;
    const [per, m, rej] = await Promise.all([
      query(perBucket(b, 'type', '')),
      metrics(),
      query('SELECT count(*) FROM rejected WHERE ' + receivedIn())]);
    /* the totals by type come from the same rows: one scan of the range */
    const byType = new Map();
    for (const r of per.rows) byType.set(r[1], (byType.get(r[1]) || 0) + Number(r[2]));
    const total = [...byType.values()].reduce((a, n) => a + n, 0);
    const types = [...byType.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, n, total ? n / total : 0]);
    const cards = [['events in range', total], ['types', types.length],
      ['refused in range', rej.rows[0][0], 'rejected'],
      ['accepted since start', m.events_ingested_total], ['rejected since start', m.events_rejected_total],
      ['duplicates since start', m.events_duplicate_total]];
    $('ov-cards').innerHTML = cards.map(([k, v, to]) =>
      '<div class="card' + (to ? ' click' : '') + '" data-card="' + esc(k) + '"' + (to ? ' data-to="' + to + '"' : '') +
      '><b>' + (v == null ? '–' : fmt.int(v)) + '</b><span>' + esc(k) + '</span></div>').join('');
    $('ov-cards').querySelectorAll('.card[data-to]').forEach((c) => { c.onclick = () => show(c.dataset.to); });
    const p = pivot(per.rows);
    chart('ov', $('ov-chart'), p.xs, p.series, { stacked: true });
    table($('ov-types'), [{ title: 'type', key: 0 }, { title: 'events', key: 1, fmt: fmt.int, cls: 'num' },
      { title: 'share', key: 2, fmt: fmt.pct, cls: 'num' }], types);
  },

  async rpc() {
    const chartDone = views.rpcChart(); /* in parallel with the table */
    /* the exact percentiles of rpc_latency over the range (docs/query.md) */
    const t = await query('SELECT class, method, calls, error_rate, p50, p95, p99 FROM rpc_latency_between(' +
      ts(range().lo) + ', ' + ts(range().hi) + ') ORDER BY calls DESC, class, method');
    table($('rpc-table'), [{ title: 'class', key: 0 }, { title: 'method', key: 1 },
      { title: 'calls', key: 2, fmt: fmt.int, cls: 'num' },
      { title: 'errors', key: 3, cls: 'num', html: (v) => '<span class="' + (v > 0.05 ? 'bad' : '') + '">' + fmt.pct(v) + '</span>' },
      { title: 'p50 ms', key: 4, fmt: fmt.ms, cls: 'num' }, { title: 'p95 ms', key: 5, fmt: fmt.ms, cls: 'num' },
      { title: 'p99 ms', key: 6, fmt: fmt.ms, cls: 'num' }], t.rows, {
      click: (r) => { state.rpcFilter = { cls: r[0], method: r[1] }; views.rpcChart(); } });
    await chartDone;
    markRpc();
  },

  async rpcChart() {
    const f = state.rpcFilter, b = bucket();
    $('rpc-which').textContent = f ? 'of ' + (f.cls || '') + '.' + f.method : 'of every method';
    $('rpc-all').hidden = !f;
    markRpc();
    let where = "type = 'rpc.call'";
    if (f) where += ' AND method = ' + str(f.method) + (f.cls == null ? ' AND "do"."class" IS NULL' : ' AND "do"."class" = ' + str(f.cls));
    /* exact percentiles, as the table's: one quantile_cont of the three fractions per bucket
     * costs less than three approx_quantile sketches (bench/README.md) */
    const r = await query('SELECT epoch_ms(time_bucket(' + b.sql + ', ts)) AS t, ' +
      'quantile_cont(durationMs, [0.5, 0.95, 0.99]) FROM ' + between() + ' WHERE ' + where +
      ' GROUP BY 1 ORDER BY 1');
    chart('rpc', $('rpc-chart'), r.rows.map((x) => x[0]), ['p50', 'p95', 'p99'].map((l, i) =>
      ({ label: l, values: r.rows.map((x) => (x[1] == null ? null : x[1][i])) })), { unit: 'ms' });
  },

  async cdc() {
    const b = bucket(), r = range();
    const latestSql = (from) => 'SELECT ts, replace(type, \'collection.\', \'\') AS change, collection, docId, bookmark, prev, doc ' +
      'FROM events_between(' + ts(from) + ', ' + ts(r.hi) + ") WHERE type IN ('collection.insert', 'collection.update', " +
      "'collection.delete') ORDER BY ts DESC, bookmark DESC LIMIT 50";
    /* the latest changes from the last hour of the range, the whole range only if that has too few */
    const recent = async () => {
      const last = await query(latestSql(Math.max(r.lo, r.hi - 3600e3)));
      return last.rows.length >= 50 || r.hi - r.lo <= 3600e3 ? last : query(latestSql(r.lo));
    };
    const [per, latest] = await Promise.all([
      query(perBucket(b, 'collection', " WHERE type IN ('collection.insert', 'collection.update', 'collection.delete')")),
      recent()]);
    const p = pivot(per.rows);
    chart('cdc', $('cdc-chart'), p.xs, p.series, { stacked: true });
    table($('cdc-latest'), [{ title: 'time', key: 0, fmt: fmt.time }, { title: 'change', key: 1 },
      { title: 'collection', key: 2 }, { title: 'document', key: 3 }, { title: 'bookmark', key: 4, cls: 'mono' },
      { title: 'prev → doc', key: 6, html: (v, r) => diff(r[5], r[6]) }], latest.rows, {
      click: (r) => { $('cdc-coll').value = r[2]; $('cdc-doc').value = r[3]; docHistory(); } });
  },

  async objects() {
    /* objects_between for the whole range (compacted hours from their rollups, docs/query.md);
     * the connection count (a member only the raw event has, slower to read) from the last
     * hour of the range */
    const r = range();
    const [main, conns] = await Promise.all([
      query('SELECT class, id, name, colo, last_seen, lifecycle, lifecycle_at, connects, messages, closes, ' +
        'NULL AS connections, events FROM objects_between(' + ts(r.lo) + ', ' + ts(r.hi) + ') ' +
        'ORDER BY last_seen DESC, class NULLS LAST, id LIMIT 500'),
      query("SELECT \"do\".\"class\", \"do\".id, arg_max(TRY_CAST(_events_json->>'connectionCount' AS INTEGER), ts) FROM events_between(" +
        ts(Math.max(r.lo, r.hi - 3600e3)) + ', ' + ts(r.hi) + ") WHERE type LIKE 'ws.%' GROUP BY ALL")]);
    const now = new Map(conns.rows.map((x) => [x[0] + '\u0000' + x[1], x[2]]));
    for (const row of main.rows) { const k = row[0] + '\u0000' + row[1]; if (now.has(k)) row[10] = now.get(k); }
    table($('obj-table'), [{ title: 'class', key: 0 }, { title: 'id', key: 1 }, { title: 'name', key: 2 },
      { title: 'colo', key: 3 }, { title: 'last seen', key: 4, fmt: fmt.time },
      { title: 'lifecycle', key: 5, html: (v, row) => v ? esc(v) + ' <span class="muted">' + esc(fmt.time(row[6])) + '</span>' : '' },
      { title: 'ws connects', key: 7, fmt: fmt.int, cls: 'num' }, { title: 'ws messages', key: 8, fmt: fmt.int, cls: 'num' },
      { title: 'ws closes', key: 9, fmt: fmt.int, cls: 'num' }, { title: 'connections (last hour)', key: 10, fmt: fmt.int, cls: 'num' },
      { title: 'events', key: 11, fmt: fmt.int, cls: 'num' }], main.rows);
  },

  async rejected() {
    const where = receivedIn();
    const [by, latest] = await Promise.all([
      query('SELECT class, token, count(*) AS n, max(receivedAt) AS last FROM rejected WHERE ' + where +
        ' GROUP BY ALL ORDER BY n DESC, class, token NULLS FIRST'),
      query('SELECT receivedAt, token, route, class, reason, coalesce(raw, \'(base64) \' || rawBase64) AS raw, ' +
        'requestId FROM rejected WHERE ' + where + ' ORDER BY receivedAt DESC, "index" DESC LIMIT 50')]);
    table($('rej-by'), [{ title: 'reason', key: 0 }, { title: 'token', key: 1 },
      { title: 'records', key: 2, fmt: fmt.int, cls: 'num' }, { title: 'last', key: 3, fmt: fmt.time }], by.rows);
    table($('rej-latest'), [{ title: 'received', key: 0, fmt: fmt.time }, { title: 'token', key: 1 },
      { title: 'route', key: 2 }, { title: 'reason', key: 4 }, { title: 'record', key: 5, cls: 'mono' },
      { title: 'request', key: 6, cls: 'mono' }], latest.rows);
  },

  async tail() { if (!state.tail) follow(); },

  async subs() { await loadSubs(); },

  async sql() {
    if (state.loaded.sqlCols) return;
    const cols = (r) => r.rows.map((x) => '<li>' + esc(x[0]) + ' <span>' + esc(x[1]) + '</span></li>').join('');
    const [ev, rej] = await Promise.all([query('DESCRIBE events'), query('DESCRIBE rejected')]);
    $('sql-cols').innerHTML = cols(ev);
    $('sql-rej-cols').innerHTML = cols(rej);
    state.loaded.sqlCols = true;
  },
};

/* Highlights the row of the method the latency chart shows. */
function markRpc() {
  const f = state.rpcFilter;
  document.querySelectorAll('#rpc-table tbody tr').forEach((tr) => {
    const cells = tr.children;
    tr.classList.toggle('sel', !!f && cells[1] && cells[1].textContent === f.method &&
      cells[0].textContent === (f.cls || ''));
  });
}

/* prev → doc, member by member. */
function diff(prev, doc) {
  const parse = (v) => { if (v == null) return null; try { return typeof v === 'string' ? JSON.parse(v) : v; } catch (e) { return v; } };
  const a = parse(prev), b = parse(doc);
  if (a == null && b == null) return '';
  if (a == null || typeof a !== 'object' || b == null || typeof b !== 'object') {
    return '<div class="diff">' + (a != null ? '<span class="del">− ' + esc(JSON.stringify(a)) + '</span><br>' : '') +
      (b != null ? '<span class="add">+ ' + esc(JSON.stringify(b)) + '</span>' : '') + '</div>';
  }
  const keys = [...new Set(Object.keys(a).concat(Object.keys(b)))];
  const parts = [];
  for (const k of keys) {
    const x = JSON.stringify(a[k]), y = JSON.stringify(b[k]);
    if (!(k in a)) parts.push('<span class="add">+ ' + esc(k) + ': ' + esc(y) + '</span>');
    else if (!(k in b)) parts.push('<span class="del">− ' + esc(k) + ': ' + esc(x) + '</span>');
    else if (x !== y) parts.push('<span class="chg">~ ' + esc(k) + ': ' + esc(x) + ' → ' + esc(y) + '</span>');
  }
  return '<div class="diff">' + (parts.join('<br>') || '<span class="muted">no change</span>') + '</div>';
}

async function docHistory() {
  const c = $('cdc-coll').value.trim(), d = $('cdc-doc').value.trim();
  if (!c || !d) return;
  try {
    const r = await query('SELECT ts, change, bookmark, prev, doc FROM doc_history(' + str(c) + ', ' + str(d) + ')');
    table($('cdc-history'), [{ title: 'time', key: 0, fmt: fmt.time }, { title: 'change', key: 1 },
      { title: 'bookmark', key: 2, cls: 'mono' }, { title: 'document', key: 4, cls: 'mono' },
      { title: 'prev → doc', key: 4, html: (v, row) => diff(row[3], row[4]) }], r.rows);
  } catch (e) { showError(e); }
}

/* ---- live tail -------------------------------------------------------------- */

function follow() {
  if (state.tail) state.tail.close();
  const type = $('tail-type').value.trim();
  const qs = new URLSearchParams();
  if (type) qs.set('type', type);
  if (state.token) qs.set('token', state.token);
  const es = new EventSource('/tail' + (qs.toString() ? '?' + qs : ''));
  state.tail = es;
  state.tailBuf = [];
  renderTail();
  $('tail-status').textContent = 'connecting…';
  es.onopen = () => { $('tail-status').textContent = 'following ' + (type || 'every event'); };
  es.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    state.tailBuf.unshift(ev);
    if (state.tailBuf.length > TAIL_MAX) state.tailBuf.length = TAIL_MAX;
    if (!state.tailPaused) renderTail();
    else $('tail-status').textContent = 'paused, ' + state.tailBuf.length + ' kept (at most ' + TAIL_MAX + ')';
  };
  es.addEventListener('lost', (m) => {
    let n = '?';
    try { n = JSON.parse(m.data).events; } catch (e) { /* keep ? */ }
    $('tail-status').textContent = 'following; the server could not send ' + n + ' events (its tail queue was full)';
  });
  es.addEventListener('dropped', (m) => { $('tail-status').textContent = 'dropped by the server: ' + m.data; es.close(); });
  es.addEventListener('end', () => { $('tail-status').textContent = 'the server is stopping'; es.close(); });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      $('tail-status').textContent = 'disconnected';
      if (state.token || true) fetch('/tail', { headers: headers() }).then((r) => {
        if (r.status === 401 || r.status === 403) askToken(state.token ? 'The server refused this token.' : 'This server needs a token.');
        if (r.body) r.body.cancel();
      }).catch(() => {});
    } else $('tail-status').textContent = 'reconnecting…';
  };
}

function renderTail() {
  const rows = state.tailBuf.map((ev) => {
    const rest = Object.assign({}, ev);
    for (const k of ['id', 'type', 'ts', 'receivedAt', 'do']) delete rest[k];
    return '<tr><td>' + esc(fmt.time(ev.ts)) + '</td><td>' + esc(ev.type) + '</td><td>' + esc((ev.do && ev.do.id) || '') +
      '</td><td class="mono">' + esc(JSON.stringify(rest)) + '</td></tr>';
  });
  document.querySelector('#tail-table tbody').innerHTML = rows.join('');
}

/* ---- subscriptions: the /subscriptions API (admin scope) ------------------------- */

/* method path (body: an object or null) on the API; the parsed answer, or an Error with its message. */
async function api(method, path, body) {
  const r = await fetch(path, { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}),
    body: body ? JSON.stringify(body) : undefined });
  const j = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) {
    askToken(state.token ? 'The server refused this token: ' + (j.error || r.status) : 'This server needs a token.');
    throw new AuthError(j.error || 'unauthorized');
  }
  if (!r.ok) throw new Error(j.error || 'HTTP ' + r.status);
  return j;
}

/* The list, each with its number of dead letters (GET /subscriptions/ID), and the open dead letters. */
async function loadSubs() {
  const list = (await api('GET', '/subscriptions')).subscriptions;
  const one = await Promise.all(list.slice(0, 100).map((s) =>
    api('GET', '/subscriptions/' + encodeURIComponent(s.id)).then((a) => a.subscription).catch(() => s)));
  const subs = one.concat(list.slice(100));
  const lag = (s) => fmt.int(s.lagEvents) + ' events' + (s.lagSeconds ? ', ' + Number(s.lagSeconds).toFixed(1) + ' s' : '');
  const when = (ms) => ms ? ' <span class="muted">' + esc(new Date(ms).toISOString().replace('T', ' ').slice(0, 19)) + '</span>' : '';
  const button = (act, id, label) => '<button type="button" data-act="' + act + '" data-id="' + esc(id) + '">' + label + '</button>';
  table($('subs-table'), [
    { title: 'id', key: 'id', cls: 'mono' },
    { title: 'state', key: 'state', html: (v, s) => '<span class="' + (v === 'active' ? 'ok' : 'bad') + '">' + esc(v) + '</span>' +
      (s.reason ? ' <span class="muted">' + esc(s.reason) + '</span>' : '') },
    { title: 'pattern', key: 'pattern', cls: 'mono' }, { title: 'url', key: 'url', cls: 'mono' },
    { title: 'delivered', key: 'delivered', fmt: fmt.int, cls: 'num' },
    { title: 'lag', key: 'lagEvents', html: (v, s) => esc(lag(s)) },
    { title: 'dead letters', key: 'deadLetters', html: (v, s) => v == null ? '' : button('dead', s.id, fmt.int(v)) },
    { title: 'last error', key: 'lastError', html: (v, s) => v ? '<span class="bad">' + esc(v) + '</span>' + when(s.lastErrorAt) : '' },
    { title: '', key: 'state', html: (v, s) => button(v === 'active' ? 'pause' : 'resume', s.id, v === 'active' ? 'pause' : 'resume') +
      ' ' + button('retry', s.id, 'retry') }], subs);
  if (!subs.length) $('subs-table').innerHTML = '<tr><td class="empty">no subscriptions: create one with POST /subscriptions or events subscriptions create</td></tr>';
  if (state.subsDead) await loadDead(state.subsDead);
}

/* The dead letters of id, oldest first. */
async function loadDead(id) {
  state.subsDead = id;
  const a = await api('GET', '/subscriptions/' + encodeURIComponent(id) + '/dead-letters?limit=100');
  $('subs-dead-box').hidden = false;
  $('subs-dead-id').textContent = id;
  $('subs-dead-total').textContent = a.total + ' in all' + (a.total > a.deadLetters.length ? ', the oldest ' + a.deadLetters.length + ' shown' : '');
  table($('subs-dead'), [
    { title: 'failed', key: 'failedAt', fmt: (v) => new Date(v).toISOString().replace('T', ' ').slice(0, 23) },
    { title: 'attempts', key: 'attempts', fmt: fmt.int, cls: 'num' }, { title: 'status', key: 'status' },
    { title: 'error', key: 'error' }, { title: 'answer', key: 'excerpt', cls: 'mono' },
    { title: 'events', key: 'count', fmt: fmt.int, cls: 'num' },
    { title: '', key: 'name', html: (v) => '<button type="button" data-act="retry-one" data-id="' + esc(id) +
      '" data-name="' + esc(v) + '">retry</button>' }], a.deadLetters);
  if (!a.deadLetters.length) $('subs-dead').innerHTML = '<tr><td class="empty">no dead letters</td></tr>';
}

/* A button of the view: pause, resume, retry (all or one), or the list of dead letters. */
async function subsAction(b) {
  const id = b.dataset.id, path = '/subscriptions/' + encodeURIComponent(id);
  try {
    if (b.dataset.act === 'dead') return await loadDead(id);
    if (b.dataset.act === 'retry-one') await api('POST', path + '/retry', { deadLetter: b.dataset.name });
    else await api('POST', path + '/' + b.dataset.act, null);
    $('subs-status').textContent = (b.dataset.act === 'retry-one' ? 'retry of ' + b.dataset.name : b.dataset.act) +
      ' of ' + id + (b.dataset.act.startsWith('retry') ? ' requested: the server delivering it acts on its next poll' : ': done');
    await loadSubs();
  } catch (e) { showError(e); }
}

/* ---- SQL console ------------------------------------------------------------ */

async function runSql() {
  const sql = $('sql-text').value;
  $('sql-error').hidden = true;
  $('sql-status').textContent = 'running…';
  try {
    const r = await query(sql);
    table($('sql-result'), r.columns.map((c, i) => ({ title: c.name, key: i,
      cls: /INT|DOUBLE|DECIMAL|FLOAT|HUGEINT/.test(c.type) ? 'num' : undefined })), r.rows);
    $('sql-status').textContent = r.rowCount + ' rows' + (r.truncated ? ' (truncated)' : '') + ' in ' +
      r.elapsedMs.toFixed(1) + ' ms';
    if (r.error) { /* the answer was cut after its first rows: they are shown, and why */
      $('sql-error').textContent = r.error;
      $('sql-error').hidden = false;
    }
  } catch (e) {
    if (e instanceof AuthError) return;
    $('sql-status').textContent = '';
    $('sql-error').textContent = e.message;
    $('sql-error').hidden = false;
    $('sql-result').innerHTML = '';
  }
}

async function downloadCsv() {
  try {
    const blob = await query($('sql-text').value, 'csv');
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'events-query.csv';
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } catch (e) {
    if (!(e instanceof AuthError)) { $('sql-error').textContent = e.message; $('sql-error').hidden = false; }
  }
}

/* ---- wiring ------------------------------------------------------------------- */

function showError(e) {
  if (e instanceof AuthError) return;
  $('error').textContent = e.message;
  $('error').hidden = false;
}

async function load() {
  $('error').hidden = true;
  const view = state.view, t0 = performance.now();
  document.body.dataset.loading = view;
  try {
    if (view !== 'tail' && view !== 'sql' && view !== 'subs') await chooseRange();
    await views[view]();
    $('auth').hidden = true;
  } catch (e) { showError(e); }
  if (document.body.dataset.loading === view) delete document.body.dataset.loading;
  document.body.dataset.loaded = view;
  document.body.dataset.loadMs = String(Math.round(performance.now() - t0));
}

function show(view) {
  state.view = view;
  document.querySelectorAll('#tabs button').forEach((b) => b.classList.toggle('on', b.dataset.view === view));
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== 'view-' + view; });
  if (location.hash !== '#' + view) history_replace(view);
  load();
}
function history_replace(view) { window.history.replaceState(null, '', '#' + view); }

document.querySelectorAll('#tabs button').forEach((b) => { b.onclick = () => show(b.dataset.view); });
$('range-sel').onchange = () => {
  state.rangeChosen = true;
  $('custom').hidden = $('range-sel').value !== 'custom';
  if ($('range-sel').value === 'custom') {
    const r = range();
    $('from').value = new Date(r.lo).toISOString().slice(0, 19);
    $('to').value = new Date(r.hi).toISOString().slice(0, 19);
  } else load();
};
$('apply').onclick = () => load();
$('refresh').onclick = () => load();
$('auth-form').onsubmit = (e) => {
  e.preventDefault();
  state.token = $('auth-token').value.trim();
  sessionStorage.setItem('events-token', state.token);
  $('auth').hidden = true;
  if (state.tail) { state.tail.close(); state.tail = null; }
  state.loaded = {};
  load();
};
$('rpc-all').onclick = () => { state.rpcFilter = null; views.rpcChart(); };
$('cdc-form').onsubmit = (e) => { e.preventDefault(); docHistory(); };
$('tail-form').onsubmit = (e) => { e.preventDefault(); follow(); };
$('tail-pause').onclick = () => {
  state.tailPaused = !state.tailPaused;
  $('tail-pause').textContent = state.tailPaused ? 'resume' : 'pause';
  if (!state.tailPaused) {
    renderTail();
    if (state.tail && state.tail.readyState === EventSource.OPEN)
      $('tail-status').textContent = 'following ' + ($('tail-type').value.trim() || 'every event');
  } else {
    $('tail-status').textContent = 'paused, ' + state.tailBuf.length + ' kept (at most ' + TAIL_MAX + ')';
  }
};
$('view-subs').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-act]');
  if (b) subsAction(b);
});
$('subs-retry-all').onclick = () => subsAction({ dataset: { act: 'retry', id: state.subsDead } });
$('sql-run').onclick = runSql;
$('sql-csv').onclick = downloadCsv;
$('sql-text').addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') { e.preventDefault(); runSql(); }
});
window.addEventListener('resize', () => { clearTimeout(state.resize); state.resize = setTimeout(load, 300); });
const fromHash = () => { const v = location.hash.slice(1); return v in views && v !== 'rpcChart' ? v : 'overview'; };
window.addEventListener('hashchange', () => { if (fromHash() !== state.view) show(fromHash()); });
show(fromHash());
