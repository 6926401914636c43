/*
 * e2e.mjs - webhook subscriptions end to end (issue 16, section 2): a real
 * `events serve`, subscriptions made through POST /subscriptions and the CLI,
 * events sent to /ingest, and the receiver of receiver.mjs, which verifies
 * every request with `standardwebhooks` and answers on a schedule. Scenarios
 * (argument names; default: a b c d e):
 *
 *   a  every matching event delivered at least once and in order (positions
 *      increase; no batch's `from` is behind the previous 2xx batch's `next`)
 *      through 500s, timeouts, slow answers, a 503 with Retry-After and cut
 *      connections; a retried batch keeps its webhook-id; pattern (a leading
 *      `**`) and filters let nothing else through; stats and /metrics count.
 *   b  a 410 disables the subscription (state, reason) and nothing more is
 *      sent; resume delivers what was left, the refused batch included.
 *   c  after maxAttempts a batch becomes a dead letter with the last status
 *      and an excerpt of the answer; `events subscriptions retry` delivers it
 *      (type events.retry) and it is gone.
 *   d  `events subscriptions replay --from --to` delivers exactly the events
 *      received in that range (type events.replay), and the replay ends.
 *   e  10 SIGKILLs of the server during delivery, restarted each time on its
 *      lake: every acknowledged event delivered, and the events delivered
 *      more than once at most 10 × concurrency × batchSize.
 *   f  two servers on one S3 lake (radosgw on loopback, scripts/s3-test-server):
 *      each subscription delivered by exactly one of them; SIGKILL the holder
 *      and the other takes over within lease + poll (bounded, with slack);
 *      the killed one restarted on its spool: nothing lost.
 *
 * No bad signature in any scenario. Every wait is bounded; the whole run at most 9 minutes.
 *
 *   node e2e.mjs EVENTS_BIN WORK_DIR [SCENARIO...]   (run.sh installs the packages)
 *   env EVENTS_SRC: the source tree (for scripts/s3-test-server; f only)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { check, eq, sleep, tally } from './checks.mjs';
import { http, ingest, makeEvents, startReceiver, startServer, until } from './lib.mjs';

const [bin, work, ...wanted] = process.argv.slice(2);
const scenarios = wanted.length ? wanted : ['a', 'b', 'c', 'd', 'e'];
const dir = mkdtempSync(join(work, 'e2e-'));
const SECRET = 'whsec_' + Buffer.from('subscription e2e key 24b').toString('base64');
const LEASE_S = 3;
const POLL_S = 1;
/* flags of the delivery engine every server of the test gets (docs/operations.md) */
const DELIVER_FLAGS = ['--subscription-lease', `${LEASE_S}s`, '--subscription-poll', `${POLL_S}s`];
const servers = [];
let rx;
let s3dir = null;
const deadline = setTimeout(() => finish('timed out after 540 s'), 540000);

async function finish(error) {
  clearTimeout(deadline);
  if (error) check(false, error);
  for (const s of servers) {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) continue;
    eq(await s.kill('SIGTERM'), 0, `${s.name}: the server stops cleanly at SIGTERM`);
  }
  if (rx) await rx.stop();
  if (tally.failures) for (const s of servers) console.log(`---- ${s.name} log (end):\n${s.out.slice(-3000)}`);
  if (s3dir) await run(join(process.env.EVENTS_SRC ?? '', 'scripts/s3-test-server'), ['stop', s3dir]);
  rmSync(dir, { recursive: true, force: true });
  console.log(`subscriptions: ${tally.checks - tally.failures} passed, ${tally.failures} failed`);
  process.exit(tally.failures ? 1 : 0);
}

function run(file, args, env = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: 60000 },
      (e, stdout, stderr) => resolve({ code: e ? (e.code ?? 1) : 0, stdout, stderr }));
  });
}
const cli = (srv, args) => run(bin, ['subscriptions', ...args, '--server', srv.base]);

async function server(name, args, env) {
  const s = await startServer(bin, name, [...DELIVER_FLAGS, ...args], env);
  servers.push(s);
  return s;
}

/* POST /subscriptions with the test's secret and the receiver's path /ID. */
async function subscribe(srv, id, fields) {
  const r = await http('POST', `${srv.base}/subscriptions`, {
    id, url: rx.url(`/${id}`), secret: SECRET, start: 'oldest', maxWaitMs: 100, timeoutMs: 500, ...fields });
  eq(r.status, 201, `POST /subscriptions ${id}: 201 (${JSON.stringify(r.body).slice(0, 200)})`);
  return r.body.subscription;
}
const record = async (srv, id) => (await http('GET', `${srv.base}/subscriptions/${id}`)).body.subscription;

/* The receiver's log lines for path /id answered 2xx, of body type type. */
const ok2xx = (id, type = 'events.batch') =>
  rx.lines().filter((l) => l.path === `/${id}` && l.answer === 200 && l.type === type);
const idsOf = (lines) => lines.flatMap((l) => l.ids);

/* Waits (bounded) until every id of want was delivered 2xx to id; the ids missing after ms. */
async function deliveredAll(id, want, ms, type) {
  let missing = [];
  await until(() => {
    const got = new Set(idsOf(ok2xx(id, type)));
    missing = want.filter((x) => !got.has(x));
    return missing.length === 0;
  }, ms, 200);
  return missing;
}

const seqOf = (pos) => parseInt(pos.split('.')[1], 16);

/* A cursor's text as a map sid -> seq. */
function cursorMap(text) {
  const m = new Map();
  for (const pair of String(text ?? '').split(',').filter(Boolean)) m.set(pair.split('.')[0], seqOf(pair));
  return m;
}

/*
 * Over the 2xx batches in log order: positions that do not increase within a
 * stream (bad), and batches whose from is behind the last batch's next on some
 * stream (back: something delivered again). from may be ahead of the last next:
 * the deliverer may persist a cursor moved over events the filter left out.
 */
function inOrder(lines) {
  const last = new Map();
  let bad = 0;
  let back = 0;
  for (let i = 0; i < lines.length; i++) {
    for (const p of lines[i].positions) {
      const sid = p.split('.')[0];
      if (!(seqOf(p) > (last.get(sid) ?? 0))) bad++;
      last.set(sid, seqOf(p));
    }
    if (i === 0) continue;
    const from = cursorMap(lines[i].from);
    for (const [sid, seq] of cursorMap(lines[i - 1].next)) if (!((from.get(sid) ?? 0) >= seq)) back++;
  }
  return { bad, chain: back };
}

/* ---- a: at least once, in order, through failures -------------------------------------------- */
async function scenarioA(srv) {
  await rx.schedule('/a1', '500x2,timeout,slow:300x3,503:1,drop,500,timeout,ok,500');
  await rx.schedule('/a2', 'slow:200x2,500,timeout');
  await subscribe(srv, 'a1', { pattern: 'order.*', batchSize: 10, maxAttempts: 10 });
  await subscribe(srv, 'a2', { pattern: '**.created', filters: { 'do.class': 'Orders' }, batchSize: 7,
    maxAttempts: 10 });
  const want1 = [];
  const want2 = [];
  for (let round = 0; round < 6; round++) {
    const evs = [
      ...makeEvents(`a-o${round}`, 0, 20, 'order.created', { do: { class: 'Orders', id: `o-${round}` } }),
      ...makeEvents(`a-p${round}`, 0, 5, 'order.paid'),
      ...makeEvents(`a-u${round}`, 0, 5, 'user.created', { do: { class: 'Users', id: 'u' } }),
      ...makeEvents(`a-s${round}`, 0, 5, 'shop.x.created', { do: { class: 'Orders', id: 'o' } }),
      ...makeEvents(`a-n${round}`, 0, 5, 'order.created.late'),
    ];
    await ingest(srv.base, evs);
    want1.push(...evs.filter((e) => /^order\.[^.]+$/.test(e.type)).map((e) => e.id));
    want2.push(...evs.filter((e) => e.type.endsWith('.created') && e.do?.class === 'Orders').map((e) => e.id));
    await sleep(150);
  }
  eq(await deliveredAll('a1', want1, 90000), [], 'a: every order.* event delivered to a1');
  eq(await deliveredAll('a2', want2, 90000), [], 'a: every **.created event of do.class Orders delivered to a2');
  for (const [id, want, size] of [['a1', want1, 10], ['a2', want2, 7]]) {
    const lines = ok2xx(id);
    const got = idsOf(lines);
    eq(got.filter((x) => !want.includes(x)), [], `a: ${id} got nothing its pattern and filters leave out`);
    const o = inOrder(lines);
    eq([o.bad, o.chain], [0, 0], `a: ${id}: positions increase; no batch's from is behind the last one's next`);
    check(lines.every((l) => l.ids.length >= 1 && l.ids.length <= size), `a: ${id}: batches of 1 to ${size}`);
    eq(new Set(lines.map((l) => l.webhookId)).size, lines.length, `a: ${id}: each 2xx batch has its own webhook-id`);
  }
  const all1 = rx.lines().filter((l) => l.path === '/a1');
  check(all1[1]?.webhookId === all1[0]?.webhookId && all1[1].seen === 1,
    'a: a batch retried after a 500 keeps its webhook-id');
  const r = await record(srv, 'a1');
  check(r?.delivered >= want1.length && r?.failed >= 6, `a: the record counts delivered and failed: ${JSON.stringify(r)?.slice(0, 300)}`);
  const m = await (await fetch(`${srv.base}/metrics`)).text();
  check(/events_subscription_delivered_total\{subscription="a1"\} \d+/.test(m), 'a: /metrics has a1\'s delivered');
  check(/events_subscription_failed_total\{subscription="a1"\} [1-9]/.test(m), 'a: /metrics counts a1\'s failures');
}

/* ---- b: 410 disables -------------------------------------------------------------------------- */
async function scenarioB(srv) {
  await rx.schedule('/b', '410');
  await subscribe(srv, 'b', { pattern: 'bee.*', batchSize: 5 });
  const evs = makeEvents('b', 0, 12, 'bee.hum');
  await ingest(srv.base, evs);
  const r = await until(async () => { const x = await record(srv, 'b'); return x?.state === 'disabled' && x; }, 30000);
  check(r && /410/.test(r.reason ?? ''), `b: disabled with the reason: ${JSON.stringify(r)?.slice(0, 300)}`);
  await ingest(srv.base, makeEvents('b', 12, 3, 'bee.hum'));
  const before = rx.lines().filter((l) => l.path === '/b').length;
  await sleep((POLL_S + 2) * 1000);
  eq(rx.lines().filter((l) => l.path === '/b').length, before, 'b: a disabled subscription gets nothing more');
  eq(before, 1, 'b: the 410 was the one request');
  const res = await http('POST', `${srv.base}/subscriptions/b/resume`);
  eq(res.status, 200, 'b: resume: 200');
  eq(await deliveredAll('b', makeEvents('b', 0, 15, 'bee.hum').map((e) => e.id), 30000), [],
    'b: resumed, everything delivered, the batch refused with 410 too');
}

/* ---- c: dead letters and their retry ---------------------------------------------------------- */
async function scenarioC(srv) {
  await rx.schedule('/c', '500,503:1');
  await subscribe(srv, 'c', { pattern: 'dead.*', batchSize: 5, maxAttempts: 2 });
  const first = makeEvents('c', 0, 5, 'dead.letter');
  await ingest(srv.base, first);
  const dl = await until(async () => {
    const x = await http('GET', `${srv.base}/subscriptions/c/dead-letters`);
    return x.body?.total >= 1 && x.body;
  }, 30000);
  check(dl, 'c: a dead letter after maxAttempts 2');
  if (!dl) return;
  const d = dl.deadLetters[0];
  eq([d.attempts, d.status, d.count], [2, 503, 5], 'c: the dead letter: attempts, the last status, count');
  check(/scheduled answer 503/.test(d.excerpt ?? ''), `c: the dead letter has an excerpt of the answer: ${d.excerpt}`);
  const later = makeEvents('c', 5, 5, 'dead.letter');
  await ingest(srv.base, later);
  eq(await deliveredAll('c', later.map((e) => e.id), 30000), [], 'c: the cursor moved past the dead letter');
  eq(idsOf(ok2xx('c')).filter((x) => first.some((e) => e.id === x)), [], 'c: the dead batch was not delivered');
  const r = await cli(srv, ['retry', 'c']);
  eq(r.code, 0, `c: events subscriptions retry c: exit 0 (${r.stderr.trim()})`);
  eq(await deliveredAll('c', first.map((e) => e.id), 30000, 'events.retry'), [],
    'c: retry delivers the dead letter\'s events as events.retry');
  const gone = await until(async () => (await http('GET', `${srv.base}/subscriptions/c/dead-letters`)).body?.total === 0, 15000);
  check(gone, 'c: a dead letter delivered is deleted');
}

/* ---- d: replay of a range --------------------------------------------------------------------- */
async function scenarioD(srv) {
  await subscribe(srv, 'd', { pattern: 'replay.*', batchSize: 8 });
  const groups = [];
  for (let g = 0; g < 3; g++) {
    groups.push(makeEvents(`d${g}`, 0, 20, 'replay.thing'));
    await ingest(srv.base, groups[g]);
    await sleep(1100);
  }
  eq(await deliveredAll('d', groups.flat().map((e) => e.id), 30000), [], 'd: all delivered once live');
  /* the range: from the first receivedAt of group 1 to the last of group 1, as the events carry them */
  const recv = new Map();
  for (const l of ok2xx('d')) l.ids.forEach((id, i) => recv.set(id, l.received[i]));
  const g1 = groups[1].map((e) => Date.parse(recv.get(e.id)));
  const from = new Date(Math.min(...g1)).toISOString();
  const to = new Date(Math.max(...g1)).toISOString();
  const want = [...recv].filter(([, t]) => Date.parse(t) >= Date.parse(from) && Date.parse(t) <= Date.parse(to))
    .map(([id]) => id);
  check(want.length === 20, `d: the range holds group 1 only (${want.length} events)`);
  const r = await cli(srv, ['replay', 'd', '--from', from, '--to', to]);
  eq(r.code, 0, `d: events subscriptions replay d --from --to: exit 0 (${r.stderr.trim()})`);
  eq(await deliveredAll('d', want, 30000, 'events.replay'), [], 'd: the replay delivers the range');
  const ended = await until(async () => (await record(srv, 'd'))?.replay === null, 15000);
  check(ended, 'd: the replay ends');
  const got = idsOf(ok2xx('d', 'events.replay'));
  eq([...new Set(got)].sort(), [...want].sort(), 'd: the replay delivers exactly the events of the range');
  const o = inOrder(ok2xx('d', 'events.replay'));
  eq(o.bad, 0, 'd: replayed in stream order');
}

/* ---- e: SIGKILLs during delivery -------------------------------------------------------------- */
async function scenarioE() {
  const CONC = 2;
  const BATCH = 50;
  const lake = join(dir, 'lake-e');
  let srv = await server('e0', ['--lake', lake]);
  await rx.schedule('/e', 'slow:60x1000000');
  await subscribe(srv, 'e', { pattern: 'kill.*', batchSize: BATCH, concurrency: CONC, maxAttempts: 100 });
  const acked = [];
  let n = 0;
  for (let k = 1; k <= 10; k++) {
    const evs = makeEvents('e', n, 400, 'kill.me');
    n += 400;
    await ingest(srv.base, evs);
    acked.push(...evs.map((e) => e.id));
    const before = rx.lines().filter((l) => l.path === '/e').length;
    const busy = await until(() => rx.lines().filter((l) => l.path === '/e').length >= before + 3, 30000, 20);
    check(busy, `e: deliveries under way before kill ${k}`);
    eq(await srv.kill('SIGKILL'), 'SIGKILL', `e: kill ${k}`);
    servers.splice(servers.indexOf(srv), 1);
    srv = await server(`e${k}`, ['--lake', lake]);
  }
  eq(await deliveredAll('e', acked, 120000), [], 'e: every acknowledged event delivered through 10 SIGKILLs');
  const got = idsOf(ok2xx('e'));
  const dups = got.length - new Set(got).size;
  console.log(`e: ${acked.length} events, ${got.length} delivered, ${dups} duplicates (bound ${10 * CONC * BATCH})`);
  check(dups <= 10 * CONC * BATCH, `e: duplicates ${dups} <= 10 x concurrency x batchSize`);
}

/* ---- f: two servers on one S3 lake ------------------------------------------------------------ */
async function s3Env() {
  s3dir = join(dir, 'rgw');
  const r = await run(join(process.env.EVENTS_SRC, 'scripts/s3-test-server'), ['start', s3dir]);
  if (r.code !== 0) throw new Error(`the S3 test server did not start: ${r.stdout}${r.stderr}`);
  const env = {};
  for (const line of readFileSync(join(s3dir, 'env'), 'utf8').split('\n')) {
    const eqi = line.indexOf('=');
    if (eqi > 0) env[line.slice(0, eqi)] = line.slice(eqi + 1);
  }
  return env;
}

const ownerPid = (rec) => Number(String(rec?.owner ?? '').split(':')[1]);

async function scenarioF() {
  const env = await s3Env();
  const lake = `s3://${env.EVENTS_S3_BUCKET}/subs-${process.pid}`;
  const args = (name) => ['--lake', lake, '--spool', join(dir, `spool-${name}`), '--cache', join(dir, `cache-${name}`),
    '--seal-age', '1s'];
  const A = await server('fA', args('A'), env);
  const B = await server('fB', args('B'), env);
  const ids = ['f1', 'f2', 'f3', 'f4'];
  for (const id of ids) await subscribe(A, id, { pattern: 'ha.*', batchSize: 20 });
  const sent = [];
  for (let i = 0; i < 4; i++) {
    const evs = makeEvents(`f${i}`, 0, 25, 'ha.event');
    await ingest((i % 2 ? B : A).base, evs);
    sent.push(...evs.map((e) => e.id));
  }
  for (const id of ids) eq(await deliveredAll(id, sent, 60000), [], `f: ${id}: every event delivered`);
  const pids = [A.proc.pid, B.proc.pid];
  const holders = {};
  for (const id of ids) {
    const rec = await record(B, id);
    holders[id] = ownerPid(rec);
    check(pids.includes(holders[id]), `f: ${id} is held by one of the two servers (owner ${rec?.owner})`);
  }
  const metricsOf = async (s) => (await fetch(`${s.base}/metrics`)).text();
  const [mA, mB] = [await metricsOf(A), await metricsOf(B)];
  for (const id of ids) {
    const re = new RegExp(`events_subscription_delivered_total\\{subscription="${id}"\\} ([1-9]\\d*)`);
    eq([re.test(mA), re.test(mB)].filter(Boolean).length, 1, `f: ${id} delivered by exactly one server (/metrics)`);
  }
  /* kill the holder of f1; the other takes it over */
  const victim = holders.f1 === A.proc.pid ? A : B;
  const other = victim === A ? B : A;
  const t0 = Date.now();
  eq(await victim.kill('SIGKILL'), 'SIGKILL', `f: SIGKILL ${victim.name}, the holder of f1`);
  const more = makeEvents('f-after', 0, 10, 'ha.event');
  await ingest(other.base, more);
  const bound = (LEASE_S + POLL_S) * 1000 + 10000; /* lease + poll, with slack for the batch and the lake */
  const took = await until(async () => ownerPid(await record(other, 'f1')) === other.proc.pid, bound);
  console.log(`f: ${other.name} took f1 over ${Date.now() - t0} ms after the kill (lease ${LEASE_S} s + poll ${POLL_S} s)`);
  check(took, `f: ${other.name} takes f1 over within lease + poll (+10 s slack)`);
  for (const id of ids) eq(await deliveredAll(id, more.map((e) => e.id), 30000), [], `f: ${id}: the survivor delivers`);
  /* the victim back on its spool: the events it had acknowledged before the kill are delivered too */
  servers.splice(servers.indexOf(victim), 1);
  await server(`${victim.name}-again`, args(victim.name.slice(1)), env);
  for (const id of ids) eq(await deliveredAll(id, sent, 60000), [], `f: ${id}: nothing lost`);
}

async function main() {
  const rlog = join(dir, 'deliveries.ndjson');
  rx = await startReceiver({ secret: SECRET, log: rlog });
  const plain = scenarios.filter((s) => 'abcd'.includes(s));
  if (plain.length) {
    const srv = await server('main', ['--lake', join(dir, 'lake')]);
    const run1 = { a: scenarioA, b: scenarioB, c: scenarioC, d: scenarioD };
    await Promise.all(plain.map((s) => run1[s](srv).catch((e) => check(false, `${s}: ${e.stack ?? e}`))));
  }
  if (scenarios.includes('e')) await scenarioE();
  if (scenarios.includes('f')) await scenarioF();
  eq((await rx.stats()).bad, 0, 'no request with a bad signature');
}

main().then(() => finish(), (e) => finish(e.stack ?? String(e)));
