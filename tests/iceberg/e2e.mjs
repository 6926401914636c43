/*
 * e2e.mjs - the lake's table, as compaction writes it, read by icebird (read.mjs):
 * exactly the rows `events query` answers, with the original clients' event shapes
 * (a top-level `event`, `properties`, `userId`, `anonymousId`, `do_id` beside `do`),
 * after a first compaction, after late events fold into a compacted hour (the small
 * file rewritten), and after snapshot expiry (what no snapshot names deleted).
 *
 *   node e2e.mjs EVENTS_BIN WORK_DIR      (read.mjs and icebird installed in WORK_DIR)
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { check, eq, freePort, sleep, tally } from './checks.mjs';

const [bin, work] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'events-iceberg-'));
const lake = join(dir, 'lake');
const deadline = setTimeout(() => { console.log('FAIL timed out after 100 s'); process.exit(1); }, 100000);

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
    if (i > 200 || proc.exitCode !== null) { console.log(`FAIL the server did not start\n${log}`); process.exit(1); }
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

function metadata() {
  const v = readFileSync(join(lake, 'metadata', 'version-hint.text'), 'utf8').trim();
  return JSON.parse(readFileSync(join(lake, 'metadata', `v${v}.metadata.json`), 'utf8'));
}

function filesUnder(sub, ext) {
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

await ingest(shapes('a', '10', 50));
const sealed = filesUnder('events', '.jsonl');
check(sealed.length > 0, 'the server sealed segments');
eq(filesUnder('pending', '.jsonl').sort(), sealed.sort(), 'a marker of the pending index per segment');
run(['compact', '--lake', lake, '--after', '0', '--pending-only']);
eq(filesUnder('pending', '.jsonl').length, 0, 'the markers of the folded segments are deleted');
eq(compare('after the first compaction'), 200, 'rows after the first compaction');
let m = metadata();
eq(m.snapshots.length, 1, 'one snapshot');

/* late events into the compacted hour, and a new hour */
await ingest([...shapes('b', '10', 10), ...shapes('c', '11', 10)]);
run(['compact', '--lake', lake, '--after', '0']);
eq(compare('after late events'), 280, 'rows after late events');
m = metadata();
eq(m.snapshots.map((s) => s.summary.operation), ['append', 'overwrite', 'append'],
  'the hour compacted again (its small file replaced: an overwrite), then the new hour appended');

/* expiry: every snapshot but the current one, what they alone name, the folded segments */
run(['compact', '--lake', lake, '--after', '0', '--retain', '0']);
eq(compare('after expiry'), 280, 'rows after expiry');
m = metadata();
eq(m.snapshots.length, 1, 'one snapshot kept');
const cur = m.snapshots.find((s) => s['snapshot-id'] === m['current-snapshot-id']);
eq(filesUnder('events', '.parquet').length, Number(cur.summary['total-data-files']),
  'the Parquet files in the lake are the current snapshot\'s');
/* what the expired snapshots folded in is gone; the current one's goes when it expires */
const folded = JSON.parse(cur.summary['events.folded'] || '[]').map((k) => k.split('/').pop());
eq(filesUnder('events', '.jsonl').sort(), folded.sort(),
  'the segments left are the ones the current snapshot folded in');

clearTimeout(deadline);
rmSync(dir, { recursive: true, force: true });
console.log(`iceberg e2e: ${tally.checks - tally.failures} passed, ${tally.failures} failed`);
process.exit(tally.failures ? 1 : 0);
