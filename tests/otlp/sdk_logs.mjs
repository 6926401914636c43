/*
 * sdk_logs.mjs - OpenTelemetry's JavaScript SDK exports logs to `events serve`.
 *
 * The SDK (sdk-logs) with its two OTLP/HTTP exporters, JSON
 * (exporter-logs-otlp-http) and protobuf (exporter-logs-otlp-proto), sends
 * N numbered records each (attributes, trace context, four severities, a few
 * event names and structured bodies) through a small proxy to a real server
 * on loopback. Then, through POST /query: every record is in the lake exactly
 * once, its fields mapped as docs/http.md says. The proxy loses the server's
 * first answer to the protobuf exporter (it answers 503 with Retry-After
 * instead, after the server stored the batch): the exporter sends the batch
 * again, and it is stored once. The JSON exporter's batch is sent a second
 * time as it was: stored once too. A batch with a record that cannot be an
 * event gets OTLP's partialSuccess.
 *
 *   node sdk_logs.mjs EVENTS_BIN WORK_DIR   (run.sh installs the packages in WORK_DIR)
 */
import { spawn } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { LoggerProvider, BatchLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPLogExporter as JsonExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtoExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { check, eq, freePort, sleep, tally } from './checks.mjs';

const [bin, work] = process.argv.slice(2);
if (!bin || !work) {
  console.error('usage: node sdk_logs.mjs EVENTS_BIN WORK_DIR');
  process.exit(2);
}
const N = 200;
const BASE_MS = 1795600800000; /* 2026-11-25T10:00:00.000Z; record i happens i ms later */
const SEVERITIES = [[SeverityNumber.DEBUG, 'DEBUG'], [SeverityNumber.INFO, 'INFO'],
  [SeverityNumber.WARN, 'WARN'], [SeverityNumber.ERROR, 'ERROR']];

const dir = mkdtempSync(join(tmpdir(), 'events-otlp-sdk-'));
let server = null, proxy = null, log = '';
const deadline = setTimeout(() => finish('timed out after 120 s'), 120000);

async function finish(error) {
  clearTimeout(deadline);
  if (error) {
    tally.failures++;
    console.log(`FAIL ${error}`);
  }
  if (proxy) proxy.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.on('exit', (code, signal) => r(code ?? signal)));
    server.kill('SIGTERM');
    eq(await exited, 0, 'the server stops cleanly at SIGTERM'); /* under ASan: no leak */
  }
  if (tally.failures) console.log(`server log:\n${log}`);
  rmSync(dir, { recursive: true, force: true });
  console.log(`sdk_logs: ${tally.checks - tally.failures} passed, ${tally.failures} failed`);
  process.exit(tally.failures ? 1 : 0);
}

/* ---- the server, and a proxy in front of it ------------------------------------- */

const port = await freePort();
server = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--lake', join(dir, 'lake')],
  { stdio: ['ignore', 'ignore', 'pipe'] });
server.stderr.on('data', (d) => { log += d; });
const base = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${base}/health`)).ok) break;
  } catch { /* not yet */ }
  if (i > 200 || server.exitCode !== null) await finish('the server did not start');
  await sleep(100);
}

/*
 * Forwards every request to the server. While lose > 0, the server's answer
 * (the batch is stored by then) is replaced by a 503 with Retry-After: 1, as
 * if it had been lost on its way back. Every exchange is kept in seen.
 */
let lose = 0;
const seen = [];
proxy = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const up = httpRequest({ host: '127.0.0.1', port, path: req.url, method: req.method,
      headers: req.headers }, (answer) => {
      const back = [];
      answer.on('data', (c) => back.push(c));
      answer.on('end', () => {
        const x = { ctype: req.headers['content-type'], encoding: req.headers['content-encoding'],
          body, status: answer.statusCode, answerType: answer.headers['content-type'],
          answer: Buffer.concat(back), lost: lose > 0 };
        seen.push(x);
        if (x.lost) {
          lose--;
          res.writeHead(503, { 'Retry-After': '1', 'Content-Type': 'application/json' });
          res.end('{"code":14,"message":"the proxy lost the answer"}');
          return;
        }
        res.writeHead(answer.statusCode, answer.headers);
        res.end(x.answer);
      });
    });
    up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
    up.end(body);
  });
});
await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${proxy.address().port}/v1/logs`;

/* ---- exporting -------------------------------------------------------------------- */

const hex = (n, width) => n.toString(16).padStart(width, '0');
const traceIdOf = (i) => `4bf92f3577b34da6a3ce929d${hex(i, 8)}`;
const spanIdOf = (i) => `00f067aa${hex(i, 8)}`;

/* N records, one batch, through exporter; lost: answers the proxy loses first. */
async function exportRecords(exporter, encoding, lost, records = N) {
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': 'sdk-test', 'service.version': '1.0.0',
      'test.encoding': encoding }),
    processors: [new BatchLogRecordProcessor({ exporter, maxExportBatchSize: 1000,
      maxQueueSize: 1000, scheduledDelayMillis: 60000, exportTimeoutMillis: 30000 })],
  });
  const logger = provider.getLogger('events.sdk-test', '2.0.0');
  for (let i = 0; i < records; i++) {
    const [severityNumber, severityText] = SEVERITIES[i % 4];
    logger.emit({
      timestamp: new Date(BASE_MS + i),
      severityNumber,
      severityText,
      eventName: i % 10 === 0 ? 'sdk.milestone' : undefined,
      body: i % 5 === 0 ? { message: `record ${i}`, n: i, ok: true } : `record ${i}`,
      attributes: { seq: i, encoding, 'http.status_code': 200 + (i % 3), ratio: i / 8,
        tags: ['a', 'b'] },
      context: trace.setSpanContext(ROOT_CONTEXT,
        { traceId: traceIdOf(i), spanId: spanIdOf(i), traceFlags: TraceFlags.SAMPLED }),
    });
  }
  lose = lost;
  const before = seen.length;
  await provider.forceFlush();
  await provider.shutdown();
  return seen.slice(before);
}

async function query(sql) {
  const r = await fetch(`${base}/query`, { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sql }) });
  const j = await r.json();
  if (!r.ok) throw new Error(`query failed: ${JSON.stringify(j)}`);
  return j.rows;
}

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : -1;
}

/* Every record of one encoding, once each, mapped as documented. */
async function checkStored(encoding) {
  const rows = await query(`SELECT id, type, ts, _events_json AS event FROM events ` +
    `WHERE _events_json->'resource'->>'test.encoding' = '${encoding}' ORDER BY ts`);
  eq(rows.length, N, `${encoding}: events stored`);
  const bySeq = new Map();
  for (const [id, type, ts, ev] of rows) {
    const i = ev.attributes && ev.attributes.seq;
    check(!bySeq.has(i), `${encoding}: record ${i} stored once`);
    bySeq.set(i, { id, type, ts, ev });
  }
  for (let i = 0; i < N; i++) {
    const r = bySeq.get(i);
    if (!r) { check(false, `${encoding}: record ${i} is in the lake`); continue; }
    const { ev } = r;
    const w = `${encoding} record ${i}`;
    check(/^otel-[0-9a-f]{32}$/.test(r.id) && ev.id === r.id, `${w}: id ${r.id}`);
    eq(r.type, i % 10 === 0 ? 'sdk.milestone' : 'otel.log', `${w}: type`);
    eq(ev.eventName, i % 10 === 0 ? 'sdk.milestone' : undefined, `${w}: eventName`);
    eq(r.ts, new Date(BASE_MS + i).toISOString(), `${w}: ts`);
    eq(ev.timeUnixNano, String(BigInt(BASE_MS + i) * 1000000n), `${w}: timeUnixNano`);
    check(/^\d{19}$/.test(ev.observedTimeUnixNano || ''), `${w}: observedTimeUnixNano`);
    eq(ev.severityNumber, SEVERITIES[i % 4][0], `${w}: severityNumber`);
    eq(ev.severityText, SEVERITIES[i % 4][1], `${w}: severityText`);
    eq(ev.body, i % 5 === 0 ? { message: `record ${i}`, n: i, ok: true } : `record ${i}`,
      `${w}: body`);
    eq(ev.attributes, { seq: i, encoding, 'http.status_code': 200 + (i % 3), ratio: i / 8,
      tags: ['a', 'b'] }, `${w}: attributes`);
    eq(ev.traceId, traceIdOf(i), `${w}: traceId`);
    eq(ev.spanId, spanIdOf(i), `${w}: spanId`);
    eq(ev.flags, 1, `${w}: flags`);
    eq(ev.resource && ev.resource['service.name'], 'sdk-test', `${w}: resource service.name`);
    eq(ev.resource && ev.resource['service.version'], '1.0.0', `${w}: resource service.version`);
    eq(ev.scope, { name: 'events.sdk-test', version: '2.0.0' }, `${w}: scope`);
  }
}

try {
  /* protobuf: the server stores the batch, the proxy loses its answer, the exporter retries */
  const pb = await exportRecords(new ProtoExporter({ url, timeoutMillis: 20000 }), 'protobuf', 1);
  eq(pb.map((x) => [x.ctype, x.status, x.lost]),
    [['application/x-protobuf', 200, true], ['application/x-protobuf', 200, false]],
    'protobuf: the exporter sent its batch again after the lost answer');
  check(pb.length === 2 && pb[0].body.equals(pb[1].body), 'protobuf: the same bytes both times');
  eq(pb.map((x) => [x.answerType, x.answer.length]),
    [['application/x-protobuf', 0], ['application/x-protobuf', 0]],
    'protobuf: the answers are empty ExportLogsServiceResponses');
  await checkStored('protobuf');
  eq(await metric('events_duplicate_total'), N, 'protobuf: the retry answered as duplicates');

  /* JSON: one export, then the same batch sent again as it was */
  const js = await exportRecords(new JsonExporter({ url, timeoutMillis: 20000 }), 'json', 0);
  eq(js.map((x) => [x.ctype, x.status, x.answer.toString()]),
    [['application/json', 200, '{}\n']], 'json: one export, answered {}');
  if (js.length === 1) {
    const again = await fetch(url, { method: 'POST',
      headers: { 'Content-Type': 'application/json' }, body: js[0].body });
    eq([again.status, await again.text()], [200, '{}\n'], 'json: the batch again');
  }
  await checkStored('json');
  eq(await metric('events_duplicate_total'), 2 * N, 'json: the batch again was all duplicates');
  eq(await metric('events_ingested_total'), 2 * N, 'every record stored once');
  eq(await metric('events_http_requests_total{route="otlp_logs",code="200"}'), 4,
    'four exports counted on the otlp_logs route');

  /* a record whose events.type is not a type: refused, its neighbour kept */
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': 'sdk-test', 'test.encoding': 'refused' }),
    processors: [new BatchLogRecordProcessor({ exporter: new JsonExporter({ url }),
      scheduledDelayMillis: 60000 })],
  });
  const logger = provider.getLogger('events.sdk-test');
  logger.emit({ body: 'kept', attributes: { 'events.type': 'audit.login' } });
  logger.emit({ body: 'refused', attributes: { 'events.type': 'Not A Type' } });
  const before = seen.length;
  await provider.forceFlush();
  await provider.shutdown();
  const answer = seen.slice(before).map((x) => JSON.parse(x.answer.toString()));
  eq(answer.map((a) => a.partialSuccess && a.partialSuccess.rejectedLogRecords), ['1'],
    'partialSuccess counts the refused record');
  check(answer.length === 1 && /^refused 1 of 2 log records: record 1 .*"type" must match/
    .test(answer[0].partialSuccess.errorMessage), 'partialSuccess says why');
  eq(await query(`SELECT type, _events_json->>'body' FROM events ` +
    `WHERE _events_json->'resource'->>'test.encoding' = 'refused'`), [['audit.login', 'kept']],
  'the other record is stored, typed by events.type');
} catch (e) {
  await finish(e.stack || String(e));
}
await finish(null);
