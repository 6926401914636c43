/*
 * subscriptions.mjs - the dashboard's Subscriptions view in a real browser
 * (headless Chromium through playwright-core) against a real `events serve`
 * with an admin token: two subscriptions made through the API, one with two
 * dead letters laid in the lake's directory as the deliverer writes them
 * (deadletters/{id}/{failed ms:013}-{8 hex}.json, docs/lake.md). The view
 * shows each one's state, lag, last error and number of dead letters; a click
 * lists the dead letters with their reason; pause, resume and retry (all, and
 * one) change the records, read back through the API.
 *
 *   node subscriptions.mjs EVENTS_BIN CHROMIUM WORK_DIR
 */
import { chromium } from 'playwright-core';
import { startServer } from './serve.mjs';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const [bin, chromiumPath, work] = process.argv.slice(2);
const TOKEN = 'subscriptions-test-token-0123456789';
const artifacts = join(work, 'artifacts');
let failures = 0;

function check(cond, what) {
  if (cond) console.log('ok   ' + what);
  else { failures++; console.log('FAIL ' + what); }
}

/* ---- the server, and its subscriptions --------------------------------------- */

const dir = mkdtempSync(join(tmpdir(), 'events-subs-browser-'));
writeFileSync(join(dir, 'tokens'), `admin ${TOKEN} admin\n`);
const lake = join(dir, 'lake');
const { server, base } = await startServer(bin, ['--lake', lake, '--tokens-file', join(dir, 'tokens'),
  '--compact-every', '0']);

async function api(method, path, body) {
  const r = await fetch(base + path, { method, body: body ? JSON.stringify(body) : undefined,
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + TOKEN } });
  const j = await r.json();
  if (!r.ok) throw new Error(method + ' ' + path + ': ' + r.status + ' ' + JSON.stringify(j));
  return j;
}

await api('POST', '/subscriptions', { id: 'orders', pattern: 'collection.*', url: 'http://127.0.0.1:9/orders' });
await api('POST', '/subscriptions', { id: 'audit', pattern: 'rpc.call', url: 'http://127.0.0.1:9/audit' });
mkdirSync(join(lake, 'deadletters', 'orders'), { recursive: true });
for (const [ms, status] of [[1795600800000, 500], [1795600900000, 503]])
  writeFileSync(join(lake, 'deadletters', 'orders', `${ms}-0000abcd.json`), JSON.stringify({
    subscription: 'orders', failedAt: ms, attempts: 8, status, error: 'HTTP ' + status, excerpt: 'receiver down',
    count: 3, first: 'k3x9a0qz.0000000000000001', last: 'k3x9a0qz.0000000000000003', from: '', next: 'k3x9a0qz.0000000000000003',
    events: [{}, {}, {}] }));

/* ---- the browser ----------------------------------------------------------------- */

const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
const text = (sel) => page.locator(sel).innerText();
const loaded = () => page.waitForFunction(() => document.body.dataset.loaded === 'subs', null, { timeout: 30000 });
/* the row of subscription id in the view's table, as its cells' texts */
const row = async (id) => (await page.locator('#subs-table tbody tr', { hasText: id }).first().innerText()).split('\t');
/* waits until the record of id, read through the API, satisfies pred (10 s at most) */
async function until(id, pred) {
  for (let i = 0; i < 100; i++) {
    if (pred((await api('GET', '/subscriptions/' + id)).subscription)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

try {
  await page.goto(base + '/#subs');
  await page.fill('#auth-token', TOKEN);
  await page.click('#auth-form button');
  await loaded();
  await page.screenshot({ path: join(artifacts, 'subscriptions.png') });
  const orders = await row('orders');
  check(orders[0] === 'orders' && orders[1] === 'active' && orders[2] === 'collection.*',
    'subscriptions: orders is listed, active, with its pattern (' + orders.join(' | ') + ')');
  check(orders[5] === '0 events', 'subscriptions: its lag (' + orders[5] + ')');
  check(orders[6] === '2', 'subscriptions: its 2 dead letters (' + orders[6] + ')');
  check((await row('audit'))[6] === '0', 'subscriptions: audit has none');

  await page.click('#subs-table button[data-act="dead"][data-id="orders"]');
  await page.waitForSelector('#subs-dead-box:not([hidden])');
  await page.waitForFunction(() => document.querySelectorAll('#subs-dead tbody tr').length === 2, null, { timeout: 10000 });
  const dead = await text('#subs-dead');
  check(dead.includes('HTTP 500') && dead.includes('HTTP 503') && dead.includes('receiver down'),
    'dead letters: listed with their status, error and answer');
  check(dead.indexOf('HTTP 500') < dead.indexOf('HTTP 503'), 'dead letters: oldest first');
  check((await text('#subs-dead-total')).startsWith('2 in all'), 'dead letters: the total');

  await page.click('#subs-table button[data-act="pause"][data-id="orders"]');
  check(await until('orders', (s) => s.state === 'paused'), 'pause: the record is paused');
  await page.waitForFunction(() => /paused/.test(document.querySelector('#subs-table').innerText), null, { timeout: 10000 });
  check((await row('orders'))[1] === 'paused', 'pause: the view shows it');
  await page.click('#subs-table button[data-act="resume"][data-id="orders"]');
  check(await until('orders', (s) => s.state === 'active'), 'resume: the record is active again');

  await page.click('#subs-table button[data-act="retry"][data-id="orders"]');
  check(await until('orders', (s) => s.retryRequested === 1 && s.retryName === null), 'retry: every dead letter asked for');
  /* the record can be seen changed before the page has its answer and writes the line */
  check(await page.waitForFunction(() => document.querySelector('#subs-status').innerText.includes('retry of orders requested'),
    null, { timeout: 10000 }).then(() => true, () => false), 'retry: the status line says so');
  await page.waitForFunction(() => document.querySelectorAll('#subs-dead tbody tr').length === 2, null, { timeout: 10000 });
  await page.click('#subs-dead button[data-act="retry-one"] >> nth=1');
  check(await until('orders', (s) => s.retryRequested === 2 && s.retryName === '1795600900000-0000abcd.json'),
    'retry: one dead letter by its name');
  await page.click('#subs-retry-all');
  check(await until('orders', (s) => s.retryRequested === 3 && s.retryName === null), 'retry all: from the list');
  await page.screenshot({ path: join(artifacts, 'subscriptions-dead.png') });
  check(pageErrors.length === 0, 'no script errors in the page' + (pageErrors.length ? ': ' + pageErrors.join('; ') : ''));
} catch (e) {
  failures++;
  console.log('FAIL ' + e.stack);
  await page.screenshot({ path: join(artifacts, 'subscriptions-failure.png') }).catch(() => {});
} finally {
  await browser.close();
  server.kill('SIGTERM');
  await new Promise((r) => server.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
console.log(failures ? failures + ' failed' : 'all passed');
process.exit(failures ? 1 : 0);
