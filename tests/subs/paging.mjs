/*
 * paging.mjs - GET /events paging from the start visits every event of a lake
 * of 1,000,000 events exactly once while ingest goes on (issue 16).
 *
 * A server on a directory lake with small, quickly sealed segments (so that the
 * reader crosses seals and spool-to-lake moves) is given 1,000,000 events in
 * batches of 2,000 over 4 connections. Then one reader follows `next` from an
 * empty cursor, limit 10,000, while a writer keeps ingesting more (batches of
 * 500, ids live-<n>); once the writer stops, the reader goes on until a page
 * is empty. Checked: every one of the 1,000,000 ids seen exactly once, every
 * acknowledged live id seen exactly once, no id twice, no id the test did not
 * send, and within each stream the positions strictly increase across all
 * pages. Every wait is bounded (the whole run: 10 minutes).
 *
 *   node paging.mjs EVENTS_BIN WORK_DIR [N]   (N: events before the read, default 1000000)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { check, eq, tally } from './checks.mjs';
import { http, ingest, startServer } from './lib.mjs';

const [bin, work, nArg] = process.argv.slice(2);
const N = Number(nArg ?? 1000000);
const dir = mkdtempSync(join(work, 'paging-'));
const deadline = setTimeout(() => { console.log('FAIL timed out after 600 s'); process.exit(1); }, 600000);
let srv;

async function load(base, total, batch, conns) {
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const first = next;
      next = Math.min(total, next + batch);
      const evs = [];
      for (let i = first; i < next; i++) evs.push({ id: `p-${i}`, type: 'page.test', n: i });
      await ingest(base, evs);
    }
  };
  await Promise.all(Array.from({ length: conns }, worker));
}

/* Follows next from after until a page is empty and stop() says so; calls see(event) on each. */
async function page(base, after, see, stop) {
  let pages = 0;
  for (;;) {
    const r = await http('GET', `${base}/events?limit=10000&after=${encodeURIComponent(after)}`);
    if (r.status !== 200) throw new Error(`GET /events: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    pages++;
    for (const line of r.body.events) see(line);
    check(r.body.count === r.body.events.length, 'count is the number of events');
    after = r.body.next;
    if (r.body.count === 0 && stop()) return { pages, after };
  }
}

async function main() {
  srv = await startServer(bin, 'paging', ['--lake', join(dir, 'lake'), '--seal-age', '2s',
    '--seal-bytes', '4MiB']);
  const t0 = Date.now();
  await load(srv.base, N, 2000, 4);
  console.log(`paging: ${N} events ingested in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  let writing = true;
  let live = 0;
  const liveAcked = new Set();
  const writer = (async () => {
    while (writing) {
      const evs = [];
      for (let i = 0; i < 500; i++, live++) evs.push({ id: `live-${live}`, type: 'page.live', n: live });
      await ingest(srv.base, evs);
      for (const e of evs) liveAcked.add(e.id);
    }
  })();

  const seen = new Map(); /* id -> times seen */
  const lastSeq = new Map(); /* sid -> last seq seen */
  let disorder = 0;
  let strangers = 0;
  const t1 = Date.now();
  let events = 0;
  const see = (e) => {
    events++;
    seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
    if (!/^(p|live)-\d+$/.test(e.id)) strangers++;
    const [sid, hex] = String(e._events_pos).split('.');
    const seq = parseInt(hex, 16);
    if (!(seq > (lastSeq.get(sid) ?? 0))) disorder++;
    lastSeq.set(sid, seq);
  };
  /* the reader stops the writer once it has passed the first N, then reads to the end */
  const r1 = await page(srv.base, '', (e) => {
    see(e);
    if (writing && events >= N) writing = false;
  }, () => !writing);
  await writer; /* its last batch may have been acknowledged after that empty page */
  const r2 = await page(srv.base, r1.after, see, () => true);
  const pages = r1.pages + r2.pages;
  const secs = (Date.now() - t1) / 1000;
  console.log(`paging: ${events} events in ${pages} pages in ${secs.toFixed(1)} s (${Math.round(events / secs)} events/s), ` +
    `${liveAcked.size} ingested during the read`);

  let missing = 0;
  let twice = 0;
  for (let i = 0; i < N; i++) {
    const c = seen.get(`p-${i}`) ?? 0;
    if (c === 0) missing++;
    if (c > 1) twice++;
  }
  let liveMissing = 0;
  for (const id of liveAcked) if (!seen.has(id)) liveMissing++;
  for (const [id, c] of seen) if (c > 1 && id.startsWith('live-')) twice++;
  eq(missing, 0, 'every one of the first events seen');
  eq(twice, 0, 'no event seen twice');
  eq(liveMissing, 0, 'every event acknowledged during the read seen');
  eq(strangers, 0, 'no event the test did not send');
  eq(disorder, 0, 'positions strictly increase within each stream');
  check(liveAcked.size > 0, 'ingest went on during the read');
}

main().catch((e) => check(false, e.stack ?? String(e))).finally(async () => {
  clearTimeout(deadline);
  if (srv) eq(await srv.kill('SIGTERM'), 0, 'the server stops cleanly at SIGTERM');
  if (tally.failures && srv) console.log(srv.out.slice(-4000));
  rmSync(dir, { recursive: true, force: true });
  console.log(`paging: ${tally.checks - tally.failures} passed, ${tally.failures} failed`);
  process.exit(tally.failures ? 1 : 0);
});
