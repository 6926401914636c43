/*
 * cross_origin.mjs - what other web pages can do with a server that has no
 * tokens (the default, and `make run`), in a real browser: headless Chromium
 * through playwright-core.
 *
 * A page served from another origin (here http://127.0.0.1:PAGES, a local dev
 * server as any) cannot read /query (a JSON post with its preflight, or a
 * text/plain one without), /tail, /snapshots or /metrics, and its sendBeacon
 * to /ingest stores nothing. A page of an origin given with --cors-origins
 * (http://localhost:PAGES) can. The dashboard served by the server itself
 * works without a token, its live tail too. A name that someone's DNS points at 127.0.0.1 (DNS
 * rebinding, played here with Chromium's --host-resolver-rules) is refused for
 * its Host, dashboard and /query alike.
 *
 *   node cross_origin.mjs EVENTS_BIN CHROMIUM WORK_DIR
 */
import { chromium } from 'playwright-core';
import { startServer } from './serve.mjs';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const [bin, chromiumPath, work] = process.argv.slice(2);
const artifacts = join(work, 'artifacts');
let failures = 0;

function check(cond, what) {
  if (cond) console.log('ok   ' + what);
  else { failures++; console.log('FAIL ' + what); }
}

/* ---- another origin: a plain page server ------------------------------------ */

const pages = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end('<!doctype html><title>another site</title><p>another site');
});
await new Promise((resolve) => pages.listen(0, '127.0.0.1', resolve));
const pagesPort = pages.address().port;
const other = 'http://127.0.0.1:' + pagesPort;   /* not allowed */
const allowed = 'http://localhost:' + pagesPort; /* given with --cors-origins */

/* ---- the server, without tokens ---------------------------------------------- */

const dir = mkdtempSync(join(tmpdir(), 'events-cross-origin-'));
const { server, base, log } = await startServer(bin, ['--lake', join(dir, 'lake'),
  '--compact-every', '0', '--cors-origins', allowed]);
const port = new URL(base).port;

/* A query from node (no Origin): what the lake holds. */
async function count(type) {
  const r = await fetch(base + '/query', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sql: 'SELECT count(*) FROM events WHERE type = $1', params: [type] }) });
  return (await r.json()).rows[0][0];
}
async function refusedOrigins() {
  const m = /events_http_refused_total\{reason="origin"\} (\d+)/.exec(await (await fetch(base + '/metrics')).text());
  return m ? Number(m[1]) : -1;
}

/* What a page can get from url: 'read: STATUS BODY' or 'blocked: …'. */
const tryRead = (page, url, init) => page.evaluate(async ([url, init]) => {
  try {
    const r = await fetch(url, init);
    return 'read: ' + r.status + ' ' + (await r.text()).slice(0, 200);
  } catch (e) { return 'blocked: ' + e.message; }
}, [url, init || {}]);
const json = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"sql":"SELECT 42 AS answer"}' };
const text = { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{"sql":"SELECT 42 AS answer"}' };

const browser = await chromium.launch({ executablePath: chromiumPath,
  args: ['--no-sandbox', '--host-resolver-rules=MAP rebind.test 127.0.0.1'] });
try {
  const page = await browser.newPage();

  /* another page: nothing to read, nothing stored */
  await page.goto(other + '/');
  const q1 = await tryRead(page, base + '/query', json);
  check(q1.startsWith('blocked'), 'another origin cannot read POST /query (JSON, preflighted): ' + q1);
  const q2 = await tryRead(page, base + '/query', text);
  check(q2.startsWith('blocked'), 'another origin cannot read POST /query (text/plain, no preflight): ' + q2);
  const snap = await tryRead(page, base + '/snapshots');
  check(snap.startsWith('blocked'), 'another origin cannot read GET /snapshots: ' + snap);
  const met = await tryRead(page, base + '/metrics');
  check(met.startsWith('blocked'), 'another origin cannot read GET /metrics: ' + met);
  const tail = await page.evaluate((url) => new Promise((resolve) => {
    const es = new EventSource(url);
    let got = 'nothing';
    es.onmessage = (e) => { got = 'message ' + e.data; };
    es.onopen = () => { got = 'open'; };
    es.onerror = () => { es.close(); resolve(got === 'nothing' ? 'error' : got); };
    setTimeout(() => { es.close(); resolve('timeout, ' + got); }, 5000);
  }), base + '/tail');
  check(tail === 'error', 'another origin cannot follow GET /tail: ' + tail);
  const queued = await page.evaluate((url) => navigator.sendBeacon(url, JSON.stringify([{ type: 'other.beacon' }])),
    base + '/ingest');
  check(queued, 'the browser sent the other page\'s beacon');

  /* the allowed origin: reads, and its beacon is stored */
  await page.goto(allowed + '/');
  const q3 = await tryRead(page, base + '/query', json);
  check(q3.startsWith('read: 200') && q3.includes('"rows":[[42]]'), 'a --cors-origins page reads POST /query: ' + q3);
  /* the original's browser clients send their correlation and request ids: the preflight allows them */
  const ids = { method: 'POST', body: '{"events":[{"type":"allowed.ids"}]}',
    headers: { 'Content-Type': 'application/json', 'X-Correlation-ID': 'c-1', 'X-Request-ID': 'r-1' } };
  const withIds = await tryRead(page, base + '/ingest', ids);
  check(withIds.startsWith('read: 200') && withIds.includes('"accepted":1'),
    'a --cors-origins page sends X-Correlation-ID and X-Request-ID (preflighted): ' + withIds);
  await page.evaluate((url) => navigator.sendBeacon(url, JSON.stringify([{ type: 'allowed.beacon' }])), base + '/ingest');
  let stored = 0;
  for (let i = 0; i < 50 && stored === 0; i++) {
    stored = await count('allowed.beacon');
    if (!stored) await new Promise((r) => setTimeout(r, 100));
  }
  check(stored === 1, 'the allowed page\'s beacon is stored (' + stored + ')');
  /* beacons leave in order, and the refusal is counted before it is answered */
  let refused = -1;
  for (let i = 0; i < 50 && refused < 6; i++) {
    refused = await refusedOrigins();
    if (refused < 6) await new Promise((r) => setTimeout(r, 100));
  }
  check(refused === 6, 'six requests of the other page refused (the preflight, text/plain /query, /snapshots, /metrics, /tail, the beacon): ' + refused);
  check(await count('other.beacon') === 0, 'the other page\'s beacon is not stored');

  /* the dashboard, served by the server itself, works without a token */
  await page.goto(base + '/');
  await page.waitForFunction(() => document.body.dataset.loaded === 'overview', null, { timeout: 30000 });
  check(await page.locator('#auth').isHidden(), 'the dashboard asks for no token');
  check((await page.locator('#ov-cards').innerText()).includes('events in range'), 'the dashboard shows its overview');
  await page.click('#tabs button[data-view="tail"]');
  await page.fill('#tail-type', 'live.*');
  await page.click('#tail-form button[type=submit]');
  await page.waitForFunction(() => /following/.test(document.getElementById('tail-status').textContent), null, { timeout: 5000 });
  await fetch(base + '/ingest', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify([{ type: 'live.event', marker: 'live-no-token' }]) });
  let live = false;
  try {
    await page.waitForFunction(() => /live-no-token/.test(document.querySelector('#tail-table tbody').textContent), null, { timeout: 5000 });
    live = true;
  } catch (e) { /* reported below */ }
  check(live, 'the dashboard follows the live tail without a token');
  await page.screenshot({ path: join(artifacts, 'cross-origin-dashboard.png') });

  /* DNS rebinding: a name pointed at 127.0.0.1 is refused for its Host */
  const r = await page.goto('http://rebind.test:' + port + '/');
  check(r.status() === 403, 'a page at http://rebind.test:' + port + '/ is refused: ' + r.status());
  check((await page.locator('body').innerText()).includes('Host \\"rebind.test:' + port + '\\" is not allowed'),
    'the refusal names the Host');
  const q4 = await tryRead(page, 'http://rebind.test:' + port + '/query', json);
  check(q4.startsWith('read: 403'), 'the rebound page gets 403 from POST /query: ' + q4);
} catch (e) {
  failures++;
  console.log('FAIL ' + (e.stack || e));
} finally {
  await browser.close();
  pages.close();
  server.kill('SIGTERM');
  await new Promise((r) => server.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
if (failures) { console.log(log()); console.log(failures + ' failed'); }
process.exit(failures ? 1 : 0);
