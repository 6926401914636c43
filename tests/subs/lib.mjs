/*
 * lib.mjs - what the subscription tests share (receiver_test.mjs, e2e.mjs,
 * paging.mjs; run.sh copies it beside them): the receiver started as a child
 * process and its log read back, `events serve` started, SIGKILLed and stopped,
 * JSON over HTTP, and waits that are always bounded.
 */
import { spawn } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, sleep } from './checks.mjs';

const here = new URL('.', import.meta.url).pathname;

/* Resolves once cond() (may be async) is truthy, to its value; null after ms. */
export async function until(cond, ms, step = 100) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) return null;
    await sleep(step);
  }
}

/* The receiver (receiver.mjs) as a child; resolves once it listens. */
export async function startReceiver({ secret, log, schedules = [] }) {
  const args = [join(here, 'receiver.mjs'), '--secret', secret, '--log', log];
  for (const s of schedules) args.push('--schedule', s);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const port = await new Promise((resolve) => {
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', () => resolve(0));
    setTimeout(() => resolve(0), 10000);
  });
  if (!port) throw new Error(`the receiver did not start: ${err}`);
  const base = `http://127.0.0.1:${port}`;
  return {
    proc, port, base, log,
    url: (path) => `${base}${path}`,
    schedule: (path, text) => post(`${base}/_control/schedule?path=${encodeURIComponent(path)}`, text),
    stats: async () => (await fetch(`${base}/_control/stats`)).json(),
    lines: () => readLog(log),
    stop: () => new Promise((r) => { proc.on('exit', r); proc.kill('SIGTERM'); }),
  };
}

/* The receiver's whole lines: the last one may be half written while the receiver runs. */
export function readLog(file) {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function post(url, text) {
  const r = await fetch(url, { method: 'POST', body: text });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

/* method url [body as JSON]: {status, body (parsed when JSON, else text)} */
export async function http(method, url, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(url, init);
  const text = await r.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* text */ }
  return { status: r.status, body: parsed, headers: r.headers };
}

/*
 * `BIN serve` on a free loopback port with args; resolves to {proc, base, log()}
 * once /health answers, or throws. kill(sig) resolves when it has exited.
 */
export async function startServer(bin, name, args, env = {}) {
  const port = await freePort();
  const proc = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, ...args],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  const s = { name, proc, port, base: `http://127.0.0.1:${port}`, out: '' };
  proc.stderr.on('data', (d) => { s.out += d; });
  s.exited = new Promise((r) => proc.on('exit', (code, sig) => r(code ?? sig)));
  s.kill = async (sig) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
    return s.exited;
  };
  const ok = await until(async () => {
    if (proc.exitCode !== null) return 'exited';
    try { return (await fetch(`${s.base}/health`)).ok; } catch { return false; }
  }, 20000);
  if (ok !== true) throw new Error(`${name}: the server did not start:\n${s.out}`);
  return s;
}

/* n events of type t with ids prefix-<i> (i from first). */
export function makeEvents(prefix, first, n, type, extra = {}) {
  const evs = [];
  for (let i = first; i < first + n; i++) evs.push({ id: `${prefix}-${i}`, type, n: i, ...extra });
  return evs;
}

/* POST /ingest; throws unless every event was accepted or a duplicate. */
export async function ingest(base, events) {
  const r = await http('POST', `${base}/ingest`, { events });
  if (r.status !== 200 || r.body.accepted + r.body.duplicates !== events.length) {
    throw new Error(`ingest: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  }
  return r.body;
}
