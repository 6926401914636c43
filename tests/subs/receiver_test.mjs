/*
 * receiver_test.mjs - the test receiver (receiver.mjs) alone, before it is
 * trusted to judge the server: deliveries signed with `standardwebhooks`'
 * Webhook.sign in the shape docs/subscriptions.md gives are verified and
 * logged (ids, positions, type, the count of earlier requests with the same
 * webhook-id); each schedule action answers as it says (status, Retry-After in
 * seconds and as a date, a held request the sender has to give up on, a slow
 * 200, a cut connection); per-path schedules; a wrong secret, a tampered body
 * and a missing header are answered 401 and logged as not verified.
 *
 *   node receiver_test.mjs EVENTS_BIN WORK_DIR   (run.sh installs the packages beside it)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { check, eq, tally } from './checks.mjs';
import { startReceiver } from './lib.mjs';

const work = process.argv[3]; /* argv[2]: the events binary, unused here */
const dir = mkdtempSync(join(work ?? '/tmp', 'receiver-'));
const secret = 'whsec_' + Buffer.from('receiver test key of 24 b').toString('base64');
const deadline = setTimeout(() => { console.log('FAIL timed out after 60 s'); process.exit(1); }, 60000);
let rx;

/* A batch as the engine sends it (design: body, headers). */
function batch(sub, first, n, { key = secret, type = 'events.batch', tamper = false, drop } = {}) {
  const events = [];
  for (let i = first; i < first + n; i++) {
    events.push({ id: `e-${i}`, type: 'shop.cart', receivedAt: new Date().toISOString(),
      _events_pos: `aaaaaaaa.${i.toString(16).padStart(16, '0')}` });
  }
  const body = JSON.stringify({ type, timestamp: new Date().toISOString(),
    data: { subscription: sub, events, from: `aaaaaaaa.${(first - 1).toString(16).padStart(16, '0')}`,
      next: `aaaaaaaa.${(first + n - 1).toString(16).padStart(16, '0')}` } });
  const id = `msg_${sub}_${first}`;
  const now = new Date();
  const headers = { 'Content-Type': 'application/json', 'webhook-id': id,
    'webhook-timestamp': String(Math.floor(now / 1000)),
    'webhook-signature': new Webhook(key).sign(id, now, body) };
  if (drop) delete headers[drop];
  return { body: tamper ? body.replace('shop.cart', 'shop.carT') : body, headers };
}

/* POST a batch to path; {status, retryAfter, ms} or {error, ms}; abort after timeoutMs. */
async function send(path, b, timeoutMs = 5000) {
  const t0 = Date.now();
  try {
    const r = await fetch(rx.url(path), { method: 'POST', body: b.body, headers: b.headers,
      signal: AbortSignal.timeout(timeoutMs) });
    await r.text();
    return { status: r.status, retryAfter: r.headers.get('retry-after'), ms: Date.now() - t0 };
  } catch (e) {
    return { error: e.name === 'TimeoutError' ? 'timeout' : 'connection', ms: Date.now() - t0 };
  }
}

async function main() {
  const log = join(dir, 'deliveries.ndjson');
  rx = await startReceiver({ secret, log, schedules: ['500x2,503:7,429:date:30,410',
    '/slow=slow:300,timeout,drop,ok'] });

  /* the '*' schedule, in order, then 200 */
  eq((await send('/a', batch('a', 1, 3))).status, 500, 'the first step: 500');
  eq((await send('/a', batch('a', 1, 3))).status, 500, '500x2: the second 500');
  const r503 = await send('/a', batch('a', 1, 3));
  eq([r503.status, r503.retryAfter], [503, '7'], '503:7 gives Retry-After: 7');
  const r429 = await send('/a', batch('a', 1, 3));
  const ahead = (Date.parse(r429.retryAfter) - Date.now()) / 1000;
  check(r429.status === 429 && ahead > 20 && ahead <= 31, `429:date:30 gives an HTTP date 30 s ahead: ${r429.retryAfter}`);
  eq((await send('/a', batch('a', 1, 3))).status, 410, 'then 410');
  eq((await send('/a', batch('a', 1, 3))).status, 200, 'the schedule used up: 200');
  eq((await send('/a', batch('a', 4, 2, { type: 'events.replay' }))).status, 200, 'a replay batch: 200');

  /* a path of its own */
  const slow = await send('/slow', batch('s', 1, 1));
  check(slow.status === 200 && slow.ms >= 290, `slow:300 answers 200 after 300 ms (${slow.ms} ms)`);
  eq((await send('/slow', batch('s', 2, 1), 800)).error, 'timeout', 'timeout: no answer before the sender gives up');
  eq((await send('/slow', batch('s', 3, 1))).error, 'connection', 'drop: the connection is cut');
  eq((await send('/slow', batch('s', 4, 1))).status, 200, 'then ok');

  /* control: a new schedule at run time */
  await rx.schedule('/b', '500x1');
  eq((await send('/b', batch('b', 1, 1))).status, 500, 'a schedule set through /_control/schedule');
  eq((await send('/b', batch('b', 1, 1))).status, 200, 'and used up');

  /* bad signatures */
  const other = 'whsec_' + Buffer.from('another key, not the one').toString('base64');
  eq((await send('/a', batch('a', 9, 1, { key: other }))).status, 401, 'a wrong secret: 401');
  eq((await send('/a', batch('a', 9, 1, { tamper: true }))).status, 401, 'a tampered body: 401');
  eq((await send('/a', batch('a', 9, 1, { drop: 'webhook-signature' }))).status, 401, 'no signature header: 401');

  const stats = await rx.stats();
  eq([stats.requests, stats.verified, stats.bad], [16, 13, 3], 'stats: requests, verified, bad');
  await rx.stop();
  const lines = rx.lines();
  eq(lines.length, 16, 'one log line per request');
  eq(lines.map((l) => l.answer), [500, 500, 503, 429, 410, 200, 200, 200, 'timeout', 'drop', 200, 500, 200,
    401, 401, 401], 'the answers logged, in order');
  const first = lines[0];
  eq([first.path, first.webhookId, first.type, first.subscription, first.ids, first.positions, first.seen],
    ['/a', 'msg_a_1', 'events.batch', 'a', ['e-1', 'e-2', 'e-3'],
      ['aaaaaaaa.0000000000000001', 'aaaaaaaa.0000000000000002', 'aaaaaaaa.0000000000000003'], 0],
    'a logged delivery: path, webhook-id, type, subscription, ids, positions, seen');
  eq(lines[5].seen, 5, 'the sixth request of one webhook-id: seen 5');
  eq(lines[6].type, 'events.replay', 'the body type is logged');
  check(lines.slice(13).every((l) => l.verified === false && l.error), 'bad signatures: verified false, with the error');
  check(lines.slice(0, 13).every((l) => l.verified === true), 'the others verified');
}

main().catch((e) => check(false, e.stack ?? String(e))).finally(() => {
  clearTimeout(deadline);
  if (rx && rx.proc.exitCode === null) rx.proc.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  console.log(`receiver: ${tally.checks - tally.failures} passed, ${tally.failures} failed`);
  process.exit(tally.failures ? 1 : 0);
});
