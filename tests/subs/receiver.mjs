/*
 * receiver.mjs - a webhook receiver on loopback for the subscription tests: it
 * verifies each delivery's signature with the `standardwebhooks` npm package,
 * records every request it gets as one NDJSON line, and answers as a schedule
 * says (fail, time out, answer slowly, 410, 429/503 with Retry-After).
 *
 *   node receiver.mjs --secret whsec_… --log FILE [--port N] [--schedule SCHED]
 *
 * It prints `listening PORT` on its first line of output once it accepts
 * connections (--port 0 or absent: a free port). Every path but /_control/…
 * is a delivery target; each path has its own schedule and may have its own
 * secret, so that one receiver serves the subscriptions of a test.
 *
 * A schedule is a comma-separated list of steps `ACTION` or `ACTIONxN` (N
 * requests, default 1), consumed one request at a time, in order; once empty,
 * requests are answered 200. ACTION is:
 *   ok              200
 *   NNN             that status (500, 410, 400, …) with a short text body
 *   429:S, 503:S    that status with `Retry-After: S` (seconds)
 *   503:date:S      the same with Retry-After as an HTTP date S seconds ahead
 *   timeout         no answer: the request is held until the sender gives up
 *                   and closes (or 10 minutes pass, then the socket is cut)
 *   slow:MS         200 after MS milliseconds
 *   drop            the connection is cut without an answer
 * On the command line a schedule is for every path (`*`), or `PATH=SCHED`
 * for one; several --schedule flags add up.
 *
 * Control (JSON answers):
 *   POST /_control/schedule?path=P   body SCHED: replaces P's schedule (absent: `*`)
 *   POST /_control/secret?path=P     body the secret for P (absent: the default)
 *   GET  /_control/stats             {"requests","verified","bad","byPath":{P:{…}}}
 *
 * The log: one line per request, written when its answer is decided (for a
 * 2xx right before the answer is sent, so `t` is the time of the 2xx):
 *   {"t":ms,"path","webhookId","timestamp","verified":bool,"error"?,
 *    "answer":status|"timeout"|"drop","type","subscription","from","next",
 *    "ids":[…],"positions":[…],"received":[receivedAt…],"seen":n}
 * seen: how many requests with this webhook-id came before (a redelivery of
 * one batch keeps its id). A request whose signature does not verify is
 * answered 401 and logged with "verified":false, so a test can assert that
 * none came.
 */
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

const args = process.argv.slice(2);
const opt = { port: 0, secret: null, log: null, schedules: [] };
for (let i = 0; i < args.length; i += 2) {
  const [k, v] = [args[i], args[i + 1]];
  if (v === undefined) usage(`${k} needs a value`);
  if (k === '--port') opt.port = Number(v);
  else if (k === '--secret') opt.secret = v;
  else if (k === '--log') opt.log = v;
  else if (k === '--schedule') opt.schedules.push(v);
  else usage(`unknown option ${k}`);
}
if (!opt.secret || !opt.log) usage('--secret and --log are required');

function usage(why) {
  console.error(`receiver.mjs: ${why}\nusage: node receiver.mjs --secret whsec_… --log FILE [--port N] [--schedule [PATH=]SCHED]`);
  process.exit(2);
}

/* Parses SCHED into steps {action, n}; throws on a bad one. */
function parseSchedule(text) {
  const steps = [];
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(ok|drop|timeout|slow:\d+|\d{3}(?::date)?(?::\d+)?)(?:x(\d+))?$/.exec(part);
    if (!m) throw new Error(`bad schedule step "${part}"`);
    steps.push({ action: m[1], n: m[2] === undefined ? 1 : Number(m[2]) });
  }
  return steps;
}

const schedules = new Map(); /* path or '*' -> steps, consumed from the front */
const secrets = new Map();   /* path -> Webhook; absent: the default */
const seen = new Map();      /* webhook-id -> requests with it so far */
const stats = { requests: 0, verified: 0, bad: 0, byPath: {} };
const defaultHook = new Webhook(opt.secret);
for (const s of opt.schedules) {
  const eq = s.indexOf('=');
  const path = eq > 0 && s.startsWith('/') ? s.slice(0, eq) : '*';
  schedules.set(path, parseSchedule(eq > 0 && path !== '*' ? s.slice(eq + 1) : s));
}

/* The next action for a request to path: from its schedule, else '*''s, else ok. */
function nextAction(path) {
  const steps = schedules.get(path) ?? schedules.get('*');
  if (!steps || steps.length === 0) return 'ok';
  const step = steps[0];
  if (--step.n <= 0) steps.shift();
  return step.action;
}

function record(line) {
  appendFileSync(opt.log, JSON.stringify(line) + '\n');
}

/* What the log keeps of a verified body. */
function summary(payload) {
  const d = payload?.data ?? {};
  const events = Array.isArray(d.events) ? d.events : [];
  return {
    type: payload?.type, subscription: d.subscription, from: d.from, next: d.next,
    ids: events.map((e) => e.id), positions: events.map((e) => e._events_pos),
    received: events.map((e) => e.receivedAt),
  };
}

function control(req, res, url, body) {
  const path = url.searchParams.get('path') ?? '*';
  const answer = (status, obj) => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(obj));
  };
  try {
    if (req.method === 'POST' && url.pathname === '/_control/schedule') {
      schedules.set(path, parseSchedule(body));
      return answer(200, { path, steps: schedules.get(path) });
    }
    if (req.method === 'POST' && url.pathname === '/_control/secret') {
      secrets.set(path, new Webhook(body.trim()));
      return answer(200, { path });
    }
    if (req.method === 'GET' && url.pathname === '/_control/stats') return answer(200, stats);
    if (req.method === 'GET' && url.pathname === '/_control/health') return answer(200, {});
  } catch (e) {
    return answer(400, { error: String(e.message ?? e) });
  }
  return answer(404, { error: `no control ${req.method} ${url.pathname}` });
}

function answerWith(action, res, line) {
  const st = /^(\d{3})(?::(date))?(?::(\d+))?$/.exec(action);
  if (action === 'ok' || action.startsWith('slow:')) {
    const delay = action === 'ok' ? 0 : Number(action.slice(5));
    setTimeout(() => {
      record({ ...line, t: Date.now(), answer: 200 });
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
    }, delay);
  } else if (action === 'drop') {
    record({ ...line, answer: 'drop' });
    res.socket.destroy();
  } else if (action === 'timeout') {
    record({ ...line, answer: 'timeout' });
    const cut = setTimeout(() => res.socket.destroy(), 600000);
    res.socket.on('close', () => clearTimeout(cut));
  } else {
    const status = Number(st[1]);
    const headers = { 'Content-Type': 'text/plain' };
    if (st[3] !== undefined) {
      headers['Retry-After'] = st[2] ? new Date(Date.now() + Number(st[3]) * 1000).toUTCString() : st[3];
    }
    record({ ...line, answer: status });
    res.writeHead(status, headers);
    res.end(`scheduled answer ${status} from the test receiver`);
  }
}

function delivery(req, res, path, body) {
  stats.requests++;
  const byPath = (stats.byPath[path] ??= { requests: 0, verified: 0, bad: 0 });
  byPath.requests++;
  const wid = req.headers['webhook-id'];
  const n = seen.get(wid) ?? 0;
  seen.set(wid, n + 1);
  const line = { t: Date.now(), path, webhookId: wid, timestamp: req.headers['webhook-timestamp'], seen: n };
  let payload;
  try {
    payload = (secrets.get(path) ?? defaultHook).verify(body, req.headers);
  } catch (e) {
    stats.bad++;
    byPath.bad++;
    record({ ...line, verified: false, error: String(e.message ?? e), answer: 401 });
    res.writeHead(401, { 'Content-Type': 'text/plain' });
    res.end('bad signature');
    return;
  }
  stats.verified++;
  byPath.verified++;
  answerWith(nextAction(path), res, { ...line, verified: true, ...summary(payload) });
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://receiver');
    if (url.pathname.startsWith('/_control/')) control(req, res, url, body);
    else delivery(req, res, url.pathname, body);
  });
});
server.requestTimeout = 0; /* a held ("timeout") request is the sender's to end */
server.keepAliveTimeout = 30000;
server.listen(opt.port, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)) && server.closeAllConnections());
