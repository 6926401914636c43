/*
 * providers.mjs - webhook deliveries of six providers against `events serve`.
 *
 * Each delivery is signed by the provider's own library where one is on npm
 * (GitHub: @octokit/webhooks-methods; Stripe: stripe's generateTestHeaderString;
 * Svix: svix's Webhook.sign, and Standard Webhooks' under provider svix), and
 * by the recipe of the provider's documentation with node:crypto where none
 * is (Slack, Linear, WorkOS). For each provider: a valid delivery is stored
 * once (the answer's shape, the event's type mapping and its webhook member,
 * checked again through POST /query), its replay is answered as a duplicate
 * and not stored again; a wrong secret, a tampered body, a missing header, a
 * stale and a future timestamp are refused 401 with details. Also: an unknown
 * provider (400), a provider without a secret (403), one allowed unsigned, a
 * body over --max-body (413), an event over --max-event-bytes (413), a body that is not JSON (400), a Content-Type
 * that is neither JSON nor form fields (415), Slack's url_verification (its
 * challenge answered, nothing stored), a form-encoded Slack slash command,
 * secret rotation (an old secret still verifies), and with tokens: no token
 * 401, an ingest token 403, a webhooks token through ?token= accepted and
 * refused everywhere else.
 *
 *   node providers.mjs EVENTS_BIN WORK_DIR   (run.sh installs the packages in WORK_DIR)
 */
import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sign as githubSign } from '@octokit/webhooks-methods';
import Stripe from 'stripe';
import { Webhook as SvixWebhook } from 'svix';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { check, eq, freePort, sleep, tally } from './checks.mjs';

const [bin, work] = process.argv.slice(2);
if (!bin || !work) {
  console.error('usage: node providers.mjs EVENTS_BIN WORK_DIR');
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'events-webhooks-'));
const servers = [];
const deadline = setTimeout(() => finish('timed out after 150 s'), 150000);

async function finish(error) {
  clearTimeout(deadline);
  if (error) {
    tally.failures++;
    console.log(`FAIL ${error}`);
  }
  for (const s of servers) {
    if (s.proc.exitCode !== null) continue;
    const exited = new Promise((r) => s.proc.on('exit', (code, signal) => r(code ?? signal)));
    s.proc.kill('SIGTERM');
    eq(await exited, 0, `${s.name}: the server stops cleanly at SIGTERM`); /* ASan: no leak */
  }
  if (tally.failures) for (const s of servers) console.log(`${s.name} log:\n${s.log}`);
  rmSync(dir, { recursive: true, force: true });
  console.log(`providers: ${tally.checks - tally.failures} passed, ${tally.failures} failed`);
  process.exit(tally.failures ? 1 : 0);
}

/* A server on loopback with args, its environment env; resolves to its base URL. */
async function startServer(name, args, env = {}) {
  const port = await freePort();
  const proc = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--lake',
    join(dir, `lake-${name}`), ...args], { stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env } });
  const s = { name, proc, log: '', base: `http://127.0.0.1:${port}` };
  proc.stderr.on('data', (d) => { s.log += d; });
  servers.push(s);
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${s.base}/health`)).ok) return s;
    } catch { /* not yet */ }
    if (i > 200 || proc.exitCode !== null) await finish(`${name}: the server did not start`);
    await sleep(100);
  }
}

/* ---- secrets and signatures --------------------------------------------------- */

const SVIX_SECRET = 'whsec_' + Buffer.from('svix test secret of 32 bytes....').toString('base64');
const SECRETS = {
  github: 'github-secret-new', stripe: 'whsec_stripe_test_secret', slack: 'slack-signing-secret',
  linear: 'linear-signing-secret', svix: SVIX_SECRET, workos: 'workos-webhook-secret',
};
const GITHUB_OLD = 'github-secret-old';
const stripe = new Stripe('sk_test_not_a_key');
const hmacHex = (key, msg) => createHmac('sha256', key).update(msg).digest('hex');
const nowS = () => Math.floor(Date.now() / 1000);

/*
 * Each provider: a body (JSON text, made anew for a timestamp t in ms, since
 * Linear's is in the body), its headers signed with secret at t, the type and
 * the delivery id its event should get, and the header a missing-header case
 * drops. tolerance: seconds, 0 without a timestamp.
 */
const ids = { github: randomUUID(), stripe: `evt_${Date.now()}`, slack: `Ev${Date.now()}`,
  linear: randomUUID(), svix: `msg_${Date.now()}`, workos: `event_${Date.now()}` };
const providers = {
  github: {
    body: () => JSON.stringify({ action: 'opened', number: 7, pull_request: { title: 'Add x' } }),
    headers: async (body, secret) => ({ 'X-GitHub-Event': 'pull_request',
      'X-GitHub-Delivery': ids.github, 'X-Hub-Signature-256': await githubSign(secret, body) }),
    type: 'webhook.github.pull_request.opened', delivery: ids.github, drop: 'X-Hub-Signature-256',
    tolerance: 0,
  },
  stripe: {
    body: () => JSON.stringify({ id: ids.stripe, object: 'event',
      type: 'customer.subscription.created', data: { object: { id: 'sub_1' } } }),
    headers: async (body, secret, t) => ({ 'Stripe-Signature': stripe.webhooks
      .generateTestHeaderString({ payload: body, secret, timestamp: Math.floor(t / 1000) }) }),
    type: 'webhook.stripe.customer.subscription.created', delivery: ids.stripe,
    drop: 'Stripe-Signature', tolerance: 300,
  },
  slack: {
    body: () => JSON.stringify({ type: 'event_callback', event_id: ids.slack, team_id: 'T1',
      event: { type: 'app_mention', text: 'hi' } }),
    headers: async (body, secret, t) => {
      const ts = String(Math.floor(t / 1000));
      return { 'X-Slack-Request-Timestamp': ts,
        'X-Slack-Signature': `v0=${hmacHex(secret, `v0:${ts}:${body}`)}` };
    },
    type: 'webhook.slack.app_mention', delivery: ids.slack, drop: 'X-Slack-Signature',
    tolerance: 300,
  },
  linear: {
    body: (t) => JSON.stringify({ action: 'create', type: 'IssueLabel', data: { id: 'lbl-1' },
      createdAt: '2026-12-01T10:00:00.000Z', webhookId: 'hook-1', webhookTimestamp: t }),
    headers: async (body, secret) => ({ 'Linear-Delivery': ids.linear,
      'Linear-Event': 'IssueLabel', 'Linear-Signature': hmacHex(secret, body) }),
    type: 'webhook.linear.issue_label.create', delivery: ids.linear, drop: 'Linear-Signature',
    tolerance: 60,
  },
  svix: {
    body: () => JSON.stringify({ type: 'invoice.paid', data: { id: 'in_1' } }),
    headers: async (body, secret, t) => ({ 'svix-id': ids.svix, 'svix-timestamp':
      String(Math.floor(t / 1000)), 'svix-signature': new SvixWebhook(secret)
      .sign(ids.svix, new Date(t), body) }),
    type: 'webhook.svix.invoice.paid', delivery: ids.svix, drop: 'svix-signature',
    tolerance: 300,
  },
  workos: {
    body: () => JSON.stringify({ id: ids.workos, event: 'dsync.user.created',
      data: { id: 'directory_user_1' }, created_at: '2026-12-01T10:00:00.000Z' }),
    headers: async (body, secret, t) => ({ 'WorkOS-Signature':
      `t=${t}, v1=${hmacHex(secret, `${t}.${body}`)}` }),
    type: 'webhook.workos.dsync.user.created', delivery: ids.workos, drop: 'WorkOS-Signature',
    tolerance: 180,
  },
};

/* POSTs a delivery; resolves to {status, json}. */
async function deliver(base, provider, body, headers, { ctype = 'application/json', path } = {}) {
  const r = await fetch(`${base}${path ?? `/webhooks/${provider}`}`, { method: 'POST',
    headers: { 'Content-Type': ctype, ...headers }, body });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, json };
}

async function query(base, sql, token) {
  const r = await fetch(`${base}/query`, { method: 'POST', headers: { 'Content-Type':
    'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  body: JSON.stringify({ sql }) });
  const j = await r.json();
  if (!r.ok) throw new Error(`query failed: ${JSON.stringify(j)}`);
  return j.rows;
}
const countId = async (base, id) =>
  (await query(base, `SELECT count(*) FROM events WHERE id = '${id}'`))[0][0];

/* ---- one provider, every case -------------------------------------------------- */

async function oneProvider(base, name) {
  const p = providers[name];
  const t = Date.now(), body = p.body(t);
  const ok = await deliver(base, name, body, await p.headers(body, SECRETS[name], t));
  eq(ok.status, 200, `${name}: a valid delivery is accepted`);
  const ev = ok.json.event || {};
  eq([ok.json.accepted, ok.json.verified, ok.json.duplicate], [true, true, undefined],
    `${name}: the answer`);
  eq(ev.type, p.type, `${name}: the event's type`);
  eq(ev.payload, JSON.parse(body), `${name}: the payload is the body`);
  const wh = ev.webhook || {};
  eq([wh.provider, wh.deliveryId, wh.verified], [name, p.delivery, true],
    `${name}: the webhook member`);
  check(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(wh.receivedAt || ''),
    `${name}: webhook.receivedAt is an ISO time: ${wh.receivedAt}`);
  eq(ev.id, `wh_${name}_${p.delivery}`, `${name}: the event id is the delivery id`);

  const again = await deliver(base, name, body, await p.headers(body, SECRETS[name], t));
  eq([again.status, again.json.duplicate], [200, true], `${name}: a replay is a duplicate`);
  eq(await countId(base, ev.id), 1, `${name}: stored once`);
  const rows = await query(base, `SELECT type, _events_json AS event FROM events WHERE id = '${ev.id}'`);
  eq(rows[0] && [rows[0][0], rows[0][1].webhook.provider, rows[0][1].payload],
    [p.type, name, JSON.parse(body)], `${name}: the stored event, through POST /query`);

  const refused = async (what, res, detail) => {
    eq([res.status, res.json.error], [401, 'Invalid signature'], `${name}: ${what} is refused`);
    check(typeof res.json.details === 'string' && detail.test(res.json.details),
      `${name}: ${what}: details ${JSON.stringify(res.json.details)} match ${detail}`);
  };
  await refused('a wrong secret', await deliver(base, name, body,
    await p.headers(body, name === 'svix' ? 'whsec_' + Buffer.from('another secret').toString(
      'base64') : 'not-the-secret', t)), /does not match/);
  const tampered = body.replace(/}$/, ',"x":1}');
  await refused('a tampered body', await deliver(base, name, tampered,
    await p.headers(body, SECRETS[name], t)), /does not match/);
  const missing = await p.headers(body, SECRETS[name], t);
  delete missing[p.drop];
  await refused('a missing header', await deliver(base, name, body, missing), /missing header/);
  if (!p.tolerance) return;
  for (const [what, dt, detail] of [['a stale timestamp', -1, /s old, past the/],
    ['a future timestamp', 1, /in the future, past the/]]) {
    const t2 = t + dt * (p.tolerance + 30) * 1000, b2 = p.body(t2);
    await refused(what, await deliver(base, name, b2, await p.headers(b2, SECRETS[name], t2)),
      new RegExp(`${detail.source} ${p.tolerance} s tolerance`));
  }
}

/* ---- the rest ------------------------------------------------------------------ */

async function others(base) {
  /* Standard Webhooks' header names, under provider svix */
  const id = `msg_std_${Date.now()}`, t = Date.now();
  const body = JSON.stringify({ type: 'user.created', data: { id: 'u1' } });
  const std = await deliver(base, 'svix', body, { 'webhook-id': id, 'webhook-timestamp':
    String(Math.floor(t / 1000)), 'webhook-signature': new StandardWebhook(SVIX_SECRET)
    .sign(id, new Date(t), body) }, { path: '/webhooks?provider=svix' });
  eq([std.status, std.json.event && std.json.event.id, std.json.event && std.json.event.type],
    [200, `wh_svix_${id}`, 'webhook.svix.user.created'], 'standardwebhooks, ?provider=svix');

  /* an old GitHub secret still verifies while both are configured */
  const gid = randomUUID(), gbody = JSON.stringify({ zen: 'Keep it logically awesome.' });
  const old = await deliver(base, 'github', gbody, { 'X-GitHub-Event': 'ping',
    'X-GitHub-Delivery': gid, 'X-Hub-Signature-256': await githubSign(GITHUB_OLD, gbody) });
  eq([old.status, old.json.event && old.json.event.type], [200, 'webhook.github.ping'],
    'github: a delivery signed with the other secret of a rotation');

  /* Slack: url_verification answered, stored nothing; a form-encoded slash command */
  const before = (await query(base, "SELECT count(*) FROM events WHERE type LIKE 'webhook.slack%'"))[0][0];
  const ts = String(nowS());
  const chal = JSON.stringify({ token: 'x', challenge: 'c-123', type: 'url_verification' });
  const c = await deliver(base, 'slack', chal, { 'X-Slack-Request-Timestamp': ts,
    'X-Slack-Signature': `v0=${hmacHex(SECRETS.slack, `v0:${ts}:${chal}`)}` });
  eq([c.status, c.json], [200, { challenge: 'c-123' }], 'slack: url_verification answered');
  eq((await query(base, "SELECT count(*) FROM events WHERE type LIKE 'webhook.slack%'"))[0][0],
    before, 'slack: url_verification stores nothing');
  const form = 'command=%2Fdeploy&text=prod+now&user_id=U1';
  const f = await deliver(base, 'slack', form, { 'X-Slack-Request-Timestamp': ts,
    'X-Slack-Signature': `v0=${hmacHex(SECRETS.slack, `v0:${ts}:${form}`)}` },
  { ctype: 'application/x-www-form-urlencoded' });
  eq([f.status, f.json.event && f.json.event.type, f.json.event && f.json.event.payload],
    [200, 'webhook.slack.slash_command', { command: '/deploy', text: 'prod now', user_id: 'U1' }],
    'slack: a slash command, form-encoded');

  const unknown = await deliver(base, 'gitlab', '{}', {});
  eq(unknown.status, 400, 'an unknown provider is 400');
  check(/github, stripe, slack, linear, svix, workos/.test(unknown.json.error),
    `the 400 lists the providers: ${unknown.json.error}`);
  const notJson = 'not json', nts = String(nowS());
  const nj = await deliver(base, 'slack', notJson, { 'X-Slack-Request-Timestamp': nts,
    'X-Slack-Signature': `v0=${hmacHex(SECRETS.slack, `v0:${nts}:${notJson}`)}` });
  eq([nj.status, nj.json.error], [400, 'the body is not JSON'], 'a signed body that is not JSON');
  eq((await deliver(base, 'github', '<x/>', {}, { ctype: 'text/xml' })).status, 415,
    'a Content-Type neither JSON nor form fields is 415');
  const big = JSON.stringify({ pad: 'x'.repeat(70000) });
  eq((await deliver(base, 'github', big, await providers.github.headers(big, SECRETS.github)))
    .status, 413, 'a body over --max-body is 413');
  const large = JSON.stringify({ pad: 'x'.repeat(40000) });
  const l = await deliver(base, 'github', large, await providers.github.headers(large,
    SECRETS.github));
  eq([l.status, l.json.rejected && l.json.rejected.length], [413, 1],
    'an event over --max-event-bytes is 413, kept in the quarantine');
  const m = await (await fetch(`${base}/metrics`)).text();
  check(/events_webhooks_total\{provider="github",outcome="accepted"\} [1-9]/.test(m) &&
    /events_webhooks_total\{provider="stripe",outcome="stale_timestamp"\} 2/.test(m) &&
    /events_webhooks_total\{provider="unknown",outcome="unknown_provider"\} 1/.test(m),
  'events_webhooks_total counts the outcomes');
}

/* With tokens: the webhooks scope, ?token=, a provider without a secret, one unsigned. */
async function withTokens() {
  const tokens = join(dir, 'tokens'), secrets = join(dir, 'secrets-tokens');
  writeFileSync(tokens, 'hooks hooks-token-0123456789 webhooks\n' +
    'ing ingest-token-0123456789 ingest\nadm admin-token-01234567890 admin\n', { mode: 0o600 });
  writeFileSync(secrets, `github=${SECRETS.github}\n`, { mode: 0o600 });
  const s = await startServer('tokens', ['--tokens-file', tokens, '--webhook-secrets', secrets,
    '--webhook-allow-unsigned', 'slack']);
  const body = JSON.stringify({ zen: 'x' });
  const h = async () => ({ 'X-GitHub-Event': 'ping', 'X-GitHub-Delivery': randomUUID(),
    'X-Hub-Signature-256': await githubSign(SECRETS.github, body) });
  eq((await deliver(s.base, 'github', body, await h())).status, 401, 'tokens: no token is 401');
  eq((await deliver(s.base, 'github', body, { ...await h(),
    Authorization: 'Bearer ingest-token-0123456789' })).status, 403,
  'tokens: an ingest token is 403');
  const ok = await deliver(s.base, 'github', body, await h(),
    { path: '/webhooks/github?token=hooks-token-0123456789' });
  eq([ok.status, ok.json.verified], [200, true], 'tokens: a webhooks token in ?token= is taken');
  const bad = await deliver(s.base, 'github', body, { 'X-GitHub-Event': 'ping',
    'X-Hub-Signature-256': 'sha256=' + '0'.repeat(64) },
  { path: '/webhooks/github?token=hooks-token-0123456789' });
  eq(bad.status, 401, 'tokens: the signature is checked as well');
  const ingest = await fetch(`${s.base}/ingest`, { method: 'POST', headers: {
    Authorization: 'Bearer hooks-token-0123456789' }, body: '{"type":"x"}' });
  eq(ingest.status, 403, 'tokens: a webhooks token cannot ingest');
  const q = await fetch(`${s.base}/query`, { method: 'POST', headers: {
    Authorization: 'Bearer hooks-token-0123456789' }, body: '{"sql":"SELECT 1"}' });
  eq(q.status, 403, 'tokens: a webhooks token cannot query');
  const auth = { Authorization: 'Bearer admin-token-01234567890' };
  const nos = await deliver(s.base, 'stripe', '{}', auth);
  eq(nos.status, 403, 'a provider without a secret is 403');
  check(/EVENTS_WEBHOOK_SECRET_STRIPE/.test(nos.json.error), `the 403 says how: ${nos.json.error}`);
  const uns = await deliver(s.base, 'slack', JSON.stringify({ type: 'event_callback',
    event_id: 'EvU1', event: { type: 'message' } }), auth);
  eq([uns.status, uns.json.verified, uns.json.event && uns.json.event.webhook.verified],
    [200, false, false], 'a provider allowed unsigned is stored verified:false');
}

const secretsFile = join(dir, 'secrets');
writeFileSync(secretsFile, '# the test\'s secrets\n\n' + Object.entries(SECRETS)
  .map(([k, v]) => `${k}=${v}`).join('\n') + `\ngithub = ${GITHUB_OLD}\n`, { mode: 0o600 });
const main = await startServer('main', ['--webhook-secrets', secretsFile, '--max-body', '64KiB', '--max-event-bytes', '32KiB']);
try {
  for (const name of Object.keys(providers)) await oneProvider(main.base, name);
  await others(main.base);
  await withTokens();
} catch (e) {
  await finish(`threw: ${e.stack || e}`);
}
await finish();
