/*
 * dashboard.mjs - the dashboard in a real browser (headless Chromium through
 * playwright-core) against a real `events serve` with tokens and a seeded
 * lake: each view shows the seeded numbers (the RPC table the exact p95 this
 * test computes), the default range starts at the first event of the few minutes
 * of data, a SQL query runs and shows its rows and a bad one DuckDB's error, an
 * event posted to /ingest appears in the live tail within two seconds, a
 * wrong token is refused with a visible message, and records ingest refused
 * are counted on the overview and listed in the Rejected view.
 *
 *   node dashboard.mjs EVENTS_BIN CHROMIUM WORK_DIR [--lake DIR --bench]
 *
 * With --lake DIR --bench it only times the views against that lake (for
 * bench/dashboard.sh) and prints their load times.
 */
import { chromium } from 'playwright-core';
import { startServer } from './serve.mjs';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const [bin, chromiumPath, work, ...rest] = process.argv.slice(2);
const bench = rest.includes('--bench');
const lakeArg = rest.includes('--lake') ? rest[rest.indexOf('--lake') + 1] : null;
const TOKEN = 'dashboard-test-token-0123456789abcdef';
const artifacts = join(work, 'artifacts');
let failures = 0;
const timings = {};

function check(cond, what) {
  if (cond) console.log('ok   ' + what);
  else { failures++; console.log('FAIL ' + what); }
}

/* ---- the server ------------------------------------------------------------ */

const dir = mkdtempSync(join(tmpdir(), 'events-dashboard-'));
const tokens = join(dir, 'tokens');
writeFileSync(tokens, `admin ${TOKEN} admin,ingest,query\n`);
const lake = lakeArg || join(dir, 'lake');
const { server, base, log } = await startServer(bin, ['--lake', lake, '--tokens-file', tokens,
  '--compact-every', '0', '--query-threads', '4']);

async function ingest(events) {
  const r = await fetch(base + '/ingest', { method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + TOKEN }, body: JSON.stringify(events) });
  if (r.status !== 200) throw new Error('ingest: ' + r.status + ' ' + await r.text());
  return r.json();
}

/* ---- the seed: known numbers --------------------------------------------------- */

const now = Date.now();
const at = (sAgo) => new Date(now - sAgo * 1000).toISOString();
const seed = [];
const durations = [];
for (let i = 0; i < 200; i++) {
  const d = 1 + ((i * 37) % 200); /* 1..200 ms, shuffled */
  durations.push(d);
  seed.push({ id: 'send-' + i, type: 'rpc.call', ts: at(30 + i * 5), method: 'sendMessage', durationMs: d,
    success: true, do: { id: 'room-' + (1 + (i % 2)), class: 'ChatRoom', name: i % 2 ? 'general' : 'lobby', colo: 'FRA' } });
}
for (let i = 0; i < 50; i++) {
  seed.push({ id: 'hist-' + i, type: 'rpc.call', ts: at(40 + i * 7), method: 'getHistory', durationMs: 10 + i,
    success: i % 5 !== 0, error: i % 5 === 0 ? 'timeout' : undefined, do: { id: 'room-1', class: 'ChatRoom' } });
}
seed.push({ id: 'u1-1', type: 'collection.insert', ts: at(600), collection: 'users', docId: 'u1', bookmark: '0000000000000001',
  doc: { name: 'Ada', plan: 'free' }, prev: null, do: { id: 'room-1', class: 'ChatRoom' } });
seed.push({ id: 'u1-2', type: 'collection.update', ts: at(500), collection: 'users', docId: 'u1', bookmark: '0000000000000002',
  doc: { name: 'Ada', plan: 'pro' }, prev: { name: 'Ada', plan: 'free' }, do: { id: 'room-1', class: 'ChatRoom' } });
seed.push({ id: 'u1-3', type: 'collection.delete', ts: at(400), collection: 'users', docId: 'u1', bookmark: '0000000000000003',
  doc: null, prev: { name: 'Ada', plan: 'pro' }, do: { id: 'room-1', class: 'ChatRoom' } });
seed.push({ id: 'life-1', type: 'do.create', ts: at(900), do: { id: 'room-1', class: 'ChatRoom', name: 'lobby', colo: 'FRA' } });
seed.push({ id: 'life-2', type: 'do.alarm', ts: at(300), reason: 'cleanup', do: { id: 'room-2', class: 'ChatRoom', name: 'general', colo: 'FRA' } });
for (let i = 0; i < 7; i++) {
  seed.push({ id: 'ws-' + i, type: i < 4 ? 'ws.connect' : 'ws.close', ts: at(200 - i), connectionCount: i < 4 ? i + 1 : 7 - i,
    do: { id: 'room-2', class: 'ChatRoom' } });
}
/* quantile_cont: linear interpolation between the closest ranks */
function quantile(values, q) {
  const s = values.slice().sort((a, b) => a - b), h = (s.length - 1) * q, lo = Math.floor(h);
  return lo + 1 < s.length ? s[lo] + (h - lo) * (s[lo + 1] - s[lo]) : s[lo];
}
const p95 = quantile(durations, 0.95).toFixed(2);

/* records the server refuses: kept in the quarantine, shown by the Rejected view */
const refused = [{ log: 'no type here', id: 'ref-1' }, { log: 'nor here', id: 'ref-2' },
  { type: 'app.log', ts: 'yesterday-ish', id: 'ref-3' }];

if (!bench) {
  await ingest(seed);
  const a = await ingest(refused);
  if (a.rejectedCount !== 3) throw new Error('the refused records were not refused: ' + JSON.stringify(a));
}

/* ---- the browser --------------------------------------------------------------- */

const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));

async function view(name) {
  const t0 = Date.now();
  await page.evaluate(() => { delete document.body.dataset.loaded; });
  await page.click('#tabs button[data-view="' + name + '"]');
  await page.waitForFunction((v) => document.body.dataset.loaded === v, name, { timeout: 30000 });
  timings[name] = Date.now() - t0;
  if (bench) timings[name + '_page'] = Number(await page.evaluate(() => document.body.dataset.loadMs));
  await page.screenshot({ path: join(artifacts, name + '.png') });
}
const text = (sel) => page.locator(sel).innerText();

try {
  await page.goto(base + '/');
  if (bench) {
    await page.fill('#auth-token', TOKEN);
    await page.click('#auth-form button');
    await page.waitForFunction(() => document.body.dataset.loaded === 'overview', null, { timeout: 60000 });
    await page.evaluate(() => { delete document.body.dataset.loaded; });
    await page.selectOption('#range-sel', '24h');
    await page.waitForFunction(() => document.body.dataset.loaded === 'overview', null, { timeout: 60000 });
    for (const round of [1, 2, 3]) {
      for (const v of ['overview', 'rpc', 'cdc', 'objects', 'rejected', 'sql']) {
        if (v === 'sql') await view('overview');
        await view(v);
        timings[v + '_' + round] = timings[v];
        timings[v + '_page_' + round] = timings[v + '_page'];
        delete timings[v];
        delete timings[v + '_page'];
      }
    }
    } else {
    /* a token is asked for; a wrong one is refused, visibly */
    await page.waitForSelector('#auth:not([hidden])', { timeout: 10000 });
    check((await text('#auth-msg')).includes('needs a token'), 'the dashboard asks for a token');
    await page.fill('#auth-token', 'wrong-token');
    await page.click('#auth-form button');
    await page.waitForFunction(() => /refused/.test(document.getElementById('auth-msg').textContent) &&
      !document.getElementById('auth').hidden, null, { timeout: 10000 });
    check((await text('#auth-msg')).includes('The server refused this token'), 'a wrong token is refused with a message');
    await page.screenshot({ path: join(artifacts, 'wrong-token.png') });
    await page.fill('#auth-token', TOKEN);
    await page.click('#auth-form button');
    await page.waitForFunction(() => document.body.dataset.loaded === 'overview' &&
      document.getElementById('auth').hidden, null, { timeout: 20000 });

    /* overview */
    await view('overview');

    /* a new server with a few minutes of data: the range starts at its first event, and the
     * range picker says so (not the last hour, where the data would be a spike at the right) */
    const firstTs = Math.min(...seed.map((e) => Date.parse(e.ts)));
    const picked = await page.$eval('#range-sel', (s) => ({ value: s.value, text: s.options[s.selectedIndex].text }));
    const wantLabel = 'since ' + new Date(firstTs).toISOString().slice(11, 19) + ' UTC (fits the data)';
    check(picked.text === wantLabel, 'range: the picker says "' + wantLabel + '" (shown "' + picked.text + '")');
    const x = await page.evaluate(() => { const u = state.charts.ov; return u ? { min: u.scales.x.min, max: u.scales.x.max } : null; });
    const at0 = x ? (firstTs / 1000 - x.min) / (x.max - x.min) : -1;
    check(x && at0 >= 0 && at0 < 0.1, 'range: the overview chart starts at the first event (at ' +
      (100 * at0).toFixed(1) + '% of its width)');

    const cards = await text('#ov-cards');
    check(cards.includes(String(seed.length)) && cards.includes('events in range'), 'overview: ' + seed.length + ' events in range');
    const types = await text('#ov-types');
    check(/rpc\.call\s+250\s/.test(types), 'overview: 250 rpc.call');
    check(await page.locator('#ov-chart canvas').count() === 1, 'overview: the chart is drawn');
    const refusedCard = await page.locator('.card[data-card="refused in range"] b').innerText();
    check(refusedCard === '3', 'overview: 3 refused in range (shown ' + refusedCard + ')');

    /* the quarantine: by reason, and the latest records as they were sent */
    await page.evaluate(() => { delete document.body.dataset.loaded; });
    await page.click('.card[data-card="refused in range"]');
    await page.waitForFunction(() => document.body.dataset.loaded === 'rejected', null, { timeout: 30000 });
    await page.screenshot({ path: join(artifacts, 'rejected.png') });
    const by = await text('#rej-by');
    check(/type\s+admin\s+2\s/.test(by) && /ts\s+admin\s+1\s/.test(by), 'rejected: 2 for their type, 1 for their ts (' + by.replace(/\s+/g, ' ') + ')');
    const latestRefused = await text('#rej-latest');
    check(latestRefused.includes('"type" is required') && latestRefused.includes('{"log":"no type here","id":"ref-1"}'),
      'rejected: the latest records with their reason and as sent');
    check(latestRefused.includes('"ts" must be an ISO 8601 time between 1970 and 9999'), 'rejected: the ts reason');

    /* RPC: the exact p95 */
    await view('rpc');
    const row = page.locator('#rpc-table tbody tr', { hasText: 'sendMessage' });
    const cells = await row.locator('td').allInnerTexts();
    check(cells[0] === 'ChatRoom' && cells[2] === '200', 'rpc: ChatRoom.sendMessage 200 calls');
    check(cells[5] === p95, `rpc: p95 of sendMessage is ${p95} (shown ${cells[5]})`);
    const hist = await page.locator('#rpc-table tbody tr', { hasText: 'getHistory' }).locator('td').allInnerTexts();
    check(hist[3] === '20.0%', 'rpc: getHistory error rate 20.0% (shown ' + hist[3] + ')');
    await row.click();
    await page.waitForFunction(() => document.getElementById('rpc-which').textContent === 'of ChatRoom.sendMessage');
    check(await page.locator('#rpc-chart canvas').count() === 1, 'rpc: the latency chart of the method');
    await page.screenshot({ path: join(artifacts, 'rpc-method.png') });

    /* data changes */
    await view('cdc');
    const latest = await text('#cdc-latest');
    check(latest.includes('~ plan: "free" → "pro"'), 'cdc: the update is shown as a diff');
    await page.fill('#cdc-coll', 'users');
    await page.fill('#cdc-doc', 'u1');
    await page.click('#cdc-form button');
    await page.waitForFunction(() => document.querySelectorAll('#cdc-history tbody tr').length === 3);
    const h = await text('#cdc-history');
    check(h.indexOf('insert') < h.indexOf('update') && h.indexOf('update') < h.indexOf('delete'), 'cdc: u1 history in order');
    await page.screenshot({ path: join(artifacts, 'cdc-history.png') });

    /* objects */
    await view('objects');
    const r2 = await page.locator('#obj-table tbody tr', { hasText: 'room-2' }).locator('td').allInnerTexts();
    check(r2[5].startsWith('do.alarm') && r2[6] === '4' && r2[8] === '3' && r2[9] === '1',
      'objects: room-2 alarm, 4 connects, 3 closes, 1 connection now (' + r2.join('|') + ')');

    /* SQL console */
    await view('sql');
    check((await text('#sql-cols')).includes('durationMs DOUBLE'), 'sql: the columns are listed');
    check((await text('#sql-rej-cols')).includes('rawBase64 VARCHAR'), 'sql: the rejected view\'s columns are listed');
    await page.fill('#sql-text', "SELECT method, count(*) AS n FROM events WHERE type = 'rpc.call' GROUP BY 1 ORDER BY 1");
    await page.press('#sql-text', 'Control+Enter');
    await page.waitForFunction(() => /rows/.test(document.getElementById('sql-status').textContent));
    const res = await text('#sql-result');
    check(/getHistory\s+50/.test(res) && /sendMessage\s+200/.test(res), 'sql: the rows of a query');
    await page.screenshot({ path: join(artifacts, 'sql.png') });
    await page.fill('#sql-text', 'SELEC nope');
    await page.press('#sql-text', 'Control+Enter');
    await page.waitForSelector('#sql-error:not([hidden])');
    check((await text('#sql-error')).includes('syntax error'), 'sql: DuckDB\'s error is shown');
    await page.fill('#sql-text', 'DELETE FROM events');
    await page.click('#sql-run');
    await page.waitForFunction(() => /only/.test(document.getElementById('sql-error').textContent));
    check(true, 'sql: a write is refused');
    const [download] = await Promise.all([page.waitForEvent('download'),
      (async () => { await page.fill('#sql-text', 'SELECT 1 AS one'); await page.click('#sql-csv'); })()]);
    const csvPath = join(artifacts, 'query.csv');
    await download.saveAs(csvPath);
    const { readFileSync } = await import('node:fs');
    check(readFileSync(csvPath, 'utf8').startsWith('one\n1'), 'sql: CSV download');

    /* live tail: an event posted now appears within two seconds; a filtered-out one does not */
    await view('tail');
    await page.fill('#tail-type', 'collection.*');
    await page.click('#tail-form button[type=submit]');
    await page.waitForFunction(() => /following/.test(document.getElementById('tail-status').textContent), null, { timeout: 5000 });
    const t0 = Date.now();
    await ingest([{ id: 'live-rpc', type: 'rpc.call', method: 'x', durationMs: 1 },
      { id: 'live-1', type: 'collection.insert', collection: 'users', docId: 'u-live', doc: { name: 'Live' } }]);
    let seen = false;
    try {
      await page.waitForFunction(() => /u-live/.test(document.querySelector('#tail-table tbody').textContent), null, { timeout: 2000 });
      seen = true;
    } catch (e) { /* reported below */ }
    timings.tail_event_ms = Date.now() - t0;
    check(seen, 'tail: the posted event appears within 2 s (' + timings.tail_event_ms + ' ms)');
    check(!(await text('#tail-table')).includes('live-rpc') && !(await text('#tail-table')).includes('"method":"x"'), 'tail: the filter holds');
    await page.click('#tail-pause');
    await ingest([{ id: 'live-2', type: 'collection.update', collection: 'users', docId: 'u-paused', doc: { name: 'P' } }]);
    await page.waitForFunction(() => /paused/.test(document.getElementById('tail-status').textContent), null, { timeout: 3000 });
    check(!(await text('#tail-table')).includes('u-paused'), 'tail: paused, the table stays');
    await page.click('#tail-pause');
    check((await text('#tail-table')).includes('u-paused'), 'tail: resumed, the kept event is shown');
    check((await text('#tail-status')).startsWith('following collection.*'), 'tail: resumed, following again');
    await page.screenshot({ path: join(artifacts, 'tail.png') });
    check(pageErrors.length === 0, 'no script errors in the page' + (pageErrors.length ? ': ' + pageErrors.join('; ') : ''));
  }
} catch (e) {
  failures++;
  console.log('FAIL ' + (e.stack || e));
  await page.screenshot({ path: join(artifacts, 'failure.png') }).catch(() => {});
} finally {
  await browser.close();
  server.kill('SIGTERM');
  await new Promise((r) => server.on('exit', r));
  if (!lakeArg) rmSync(dir, { recursive: true, force: true });
  else rmSync(tokens, { force: true });
}
writeFileSync(join(artifacts, 'timings.json'), JSON.stringify(timings, null, 2) + '\n');
console.log('timings (ms): ' + Object.entries(timings).map(([k, v]) => k + '=' + v).join(' '));
if (failures) { console.log(log()); console.log(failures + ' failed'); }
process.exit(failures ? 1 : 0);
