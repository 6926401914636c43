/*
 * e2e.mjs - the lake's table, as compaction writes it, read by icebird (read.mjs):
 * exactly the rows `events query` answers, with the original clients' event shapes
 * (a top-level `event`, `properties`, `userId`, `anonymousId`, `do_id` beside `do`),
 * after a first compaction, after late events fold into a compacted hour (the small
 * file rewritten), and after snapshot expiry (what no snapshot names deleted).
 *
 *   node e2e.mjs EVENTS_BIN WORK_DIR        a lake directory
 *   node e2e.mjs EVENTS_BIN WORK_DIR s3     a lake on S3: radosgw on loopback, started
 *                                           and stopped here (scripts/s3-test-server)
 *
 * read.mjs, s3.mjs and icebird (with aws4) installed in WORK_DIR; env EVENTS_SRC: the
 * source tree (for scripts/s3-test-server; s3 only). On S3 the server, `events compact`,
 * `events query` and icebird get the test server's environment, and the lake's objects
 * are looked at through signed requests (s3.mjs); the checks are the same.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { check, eq, freePort, sleep, tally } from './checks.mjs';

const [bin, work, where] = process.argv.slice(2);
const onS3 = where === 's3';
const dir = mkdtempSync(join(tmpdir(), 'events-iceberg-'));
const LIMIT_S = onS3 ? 240 : 100;
const deadline = setTimeout(() => finish(`timed out after ${LIMIT_S} s`), LIMIT_S * 1000);
const rgw = join(dir, 'rgw');
let rgwStarted = false;

/* Stops radosgw (if started), removes the test's files, exits with the verdict. */
async function finish(error) {
  clearTimeout(deadline);
  if (error) check(false, error);
  if (rgwStarted) {
    const r = spawnSync(join(process.env.EVENTS_SRC ?? '', 'scripts/s3-test-server'), ['stop', rgw],
      { encoding: 'utf8', timeout: 60000 });
    check(r.status === 0, `the S3 test server stops: ${r.stdout}${r.stderr}`);
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`iceberg e2e${onS3 ? ' (s3)' : ''}: ${tally.checks - tally.failures} passed, ${tally.failures} failed`);
  process.exit(tally.failures ? 1 : 0);
}

/* radosgw on loopback with a bucket; the environment it printed (scripts/s3-test-server). */
async function s3Env() {
  rgwStarted = true;
  const r = await new Promise((resolve) => {
    execFile(join(process.env.EVENTS_SRC ?? '', 'scripts/s3-test-server'), ['start', rgw], { timeout: 120000 },
      (e, stdout, stderr) => resolve({ code: e ? (e.code ?? 1) : 0, out: stdout + stderr }));
  });
  if (r.code !== 0) await finish(`the S3 test server did not start: ${r.out}`);
  const out = {};
  for (const line of readFileSync(join(rgw, 'env'), 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/* The lake, the environment its commands run in, and a look at its objects. */
const s3 = onS3 ? await s3Env() : null;
if (s3) Object.assign(process.env, s3); /* for s3.mjs, and inherited by every command */
const { s3List, s3Text } = onS3 ? await import('./s3.mjs') : {};
const bucket = s3?.EVENTS_S3_BUCKET;
const prefix = `iceberg-e2e-${process.pid}`;
const lake = onS3 ? `s3://${bucket}/${prefix}` : join(dir, 'lake');

/* An object of the lake, by its key under the lake. */
async function text(key) {
  return onS3 ? s3Text(bucket, `${prefix}/${key}`) : readFileSync(join(lake, key), 'utf8');
}

/* The names (last part of the key) of the lake's objects under SUB ending in EXT. */
async function filesUnder(sub, ext) {
  if (onS3) {
    const keys = await s3List(bucket, `${prefix}/${sub}/`);
    return keys.filter((k) => k.endsWith(ext)).map((k) => k.split('/').pop());
  }
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith(ext)) out.push(e.name);
    }
  };
  walk(join(lake, sub));
  return out;
}

/* A server on the lake until its events are posted; SIGTERM seals its segments. */
async function ingest(events) {
  const port = await freePort();
  const proc = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--lake', lake,
    '--compact-every', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${base}/health`)).ok) break; } catch { /* not yet */ }
    if (i > 200 || proc.exitCode !== null) await finish(`the server did not start\n${log}`);
    await sleep(50);
  }
  const res = await fetch(`${base}/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ events }) });
  const body = await res.json();
  eq([res.status, body.accepted], [200, events.length], 'every event accepted');
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r(code ?? signal)));
  proc.kill('SIGTERM');
  eq(await exited, 0, 'the server stops cleanly at SIGTERM');
}

/* The original clients' shapes, n of each, in an hour long closed. */
function shapes(prefix, hour, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const ts = `2026-11-20T${hour}:${String(i % 60).padStart(2, '0')}:00.${String(i % 1000).padStart(3, '0')}Z`;
    out.push({ id: `${prefix}-t${i}`, type: 'track', ts, event: 'button_click',
      properties: { plan: i % 2 ? 'pro' : 'free', n: i }, userId: `u${i % 7}`, anonymousId: `a${i}` });
    out.push({ id: `${prefix}-r${i}`, type: 'rpc.call', ts, do: { id: `room-${i % 3}`, class: 'Room', colo: 'FRA' },
      do_id: 'top-level', do_class: 'Top', method: 'join', durationMs: i + 0.25, success: i % 5 !== 0,
      ...(i % 5 === 0 ? { error: 'boom' } : {}) });
    out.push({ id: `${prefix}-c${i}`, type: 'collection.update', ts, collection: 'users', docId: `d${i % 4}`,
      doc: { name: `n${i}`, tags: ['a', 'b'] }, prev: i % 2 ? null : { name: 'old' }, bookmark: String(i).padStart(16, '0') });
    out.push({ id: `${prefix}-p${i}`, type: 'page', ts, event: { name: 'nested', depth: [1, 2] }, do_name: null });
  }
  return out;
}

function run(args) {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  check(r.status === 0, `events ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/* What `events query` answers over the whole lake, and what icebird reads from the table. */
function compare(what) {
  const rows = run(['query', '--lake', lake, '--format', 'ndjson',
    'SELECT id, type, ts, receivedAt, "do", method, durationMs, success, error, collection, docId, ' +
    'doc::VARCHAR AS doc, prev::VARCHAR AS prev, bookmark, _events_json::VARCHAR AS _events_json FROM events']);
  const expected = join(dir, 'expected.ndjson');
  writeFileSync(expected, rows);
  const r = spawnSync('node', [join(work, 'read.mjs'), lake, '--expect', expected, '--out', join(dir, 'icebird.ndjson')],
    { encoding: 'utf8' });
  check(r.status === 0, `${what}: icebird reads what events query answers: ${r.stderr}`);
  return rows.split('\n').filter((l) => l).length;
}

async function metadata() {
  const v = (await text('metadata/version-hint.text')).trim();
  return JSON.parse(await text(`metadata/v${v}.metadata.json`));
}

await ingest(shapes('a', '10', 50));
const sealed = await filesUnder('events', '.jsonl');
check(sealed.length > 0, 'the server sealed segments');
eq((await filesUnder('pending', '.jsonl')).sort(), sealed.sort(), 'a marker of the pending index per segment');
run(['compact', '--lake', lake, '--after', '0', '--pending-only']);
eq((await filesUnder('pending', '.jsonl')).length, 0, 'the markers of the folded segments are deleted');
eq(compare('after the first compaction'), 200, 'rows after the first compaction');
let m = await metadata();
eq(m.snapshots.length, 1, 'one snapshot');

/* late events into the compacted hour, and a new hour */
await ingest([...shapes('b', '10', 10), ...shapes('c', '11', 10)]);
run(['compact', '--lake', lake, '--after', '0']);
eq(compare('after late events'), 280, 'rows after late events');
m = await metadata();
eq(m.snapshots.map((s) => s.summary.operation), ['append', 'overwrite', 'append'],
  'the hour compacted again (its small file replaced: an overwrite), then the new hour appended');

/* expiry: every snapshot but the current one, what they alone name, the folded segments */
run(['compact', '--lake', lake, '--after', '0', '--retain', '0']);
eq(compare('after expiry'), 280, 'rows after expiry');
m = await metadata();
eq(m.snapshots.length, 1, 'one snapshot kept');
const cur = m.snapshots.find((s) => s['snapshot-id'] === m['current-snapshot-id']);
eq((await filesUnder('events', '.parquet')).length, Number(cur.summary['total-data-files']),
  'the Parquet files in the lake are the current snapshot\'s');
/* what the expired snapshots folded in is gone; the current one's goes when it expires */
const folded = JSON.parse(cur.summary['events.folded'] || '[]').map((k) => k.split('/').pop());
eq((await filesUnder('events', '.jsonl')).sort(), folded.sort(),
  'the segments left are the ones the current snapshot folded in');

await finish();
