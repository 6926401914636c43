/*
 * doc_samples.mjs - runs the samples of README.md and docs/*.md as a reader
 * would type them, and compares what they print with what the docs show.
 *
 * The convention the docs follow is written down in README.md ("Samples in
 * these docs"); in short:
 *
 *   - a `sh` block whose lines start with "$ " is a terminal session: each
 *     "$ " line (with its continuation lines: after a trailing backslash, a
 *     trailing | && ||, inside an open quote or a here-document) is a command,
 *     every other line the output the command prints. A command must exit 0
 *     (a doc shows a failure with `|| echo "exit status $?"`) and print
 *     exactly that: "…" inside a line matches any text, a line that is only
 *     "…" any number of lines; times (2026-11-25T10:00:00.123Z) and ULIDs
 *     stand for any time and any ULID.
 *   - a `sh` block without "$ " lines is a script: each command must exit 0;
 *     what it prints is not compared.
 *   - a `c` block is a program: saved under the name its first line gives
 *     (a comment beginning "app.c:"), or doc-sample-LINE.c, compiled against
 *     the installed libevents (cc -std=c11 -Wall -Wextra -Werror NAME.c
 *     $(pkg-config --cflags --libs events sqlite3)) and run where it stands;
 *     it must exit 0.
 *   - a block right after a line "*Not run by the doc test: REASON.*" is not
 *     run; the test lists it with its reason.
 *
 * Each file runs in order, in a fresh sandbox directory, in one shell on a
 * terminal (script(1): tables, progress bars and colours are what a reader
 * sees; colours are dropped, a line is what is left on the screen), 160
 * columns wide. The sandbox has `build` (a link to the build directory) and
 * `events` on PATH. Port 8080 of 127.0.0.1 or localhost in the docs is the
 * port of a server the test starts there (`events serve`, lake
 * ./events-lake), unless the file starts its own with a command ending in
 * `&` (then EVENTS_LISTEN is that port, and the test waits for /health after
 * it); ports 8081-8089 are other free ports. `scripts` links to the source's
 * scripts. Commands run in the background write their output to a log, not
 * to the terminal. At the end of the file, background jobs are stopped with
 * SIGTERM, and an S3 test server a page started (scripts/s3-test-server
 * start DIR) is stopped even if the page did not get to stop it.
 *
 *   node doc_samples.mjs --build BUILD_DIR --src SOURCE_DIR [--keep] [FILE...]
 */
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { get } from 'node:http';
import {
  mkdtempSync, mkdirSync, readFileSync, writeFileSync, readdirSync, rmSync, symlinkSync,
} from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';

const STEP_TIMEOUT_MS = 120000;   /* one command, one compilation, one program */
const SERVER_START_MS = 20000;
const SERVER_STOP_MS = 30000;
const COLUMNS = 160;

/* ---- arguments -------------------------------------------------------------- */

const args = process.argv.slice(2);
let build = null, src = null, keep = false;
const only = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--build') build = resolve(args[++i]);
  else if (args[i] === '--src') src = resolve(args[++i]);
  else if (args[i] === '--keep') keep = true;
  else only.push(args[i]);
}
if (!build || !src) {
  console.error('usage: node doc_samples.mjs --build BUILD_DIR --src SOURCE_DIR [--keep] [FILE...]');
  process.exit(2);
}

/* ---- markdown: the fenced blocks and their markers ------------------------------ */

const SKIP_MARKER = /^\*Not run by the doc test: (.+?)\.?\*$/;

function blocksOf(text) {
  const lines = text.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i]);
    if (!m) continue;
    const indent = m[1].length, fence = m[2];
    let j = i + 1;
    while (j < lines.length && !lines[j].trimStart().startsWith(fence)) j++;
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const skip = k >= 0 ? SKIP_MARKER.exec(lines[k].trim()) : null;
    blocks.push({
      lang: m[3], line: i + 1, skip: skip ? skip[1] : null,
      body: lines.slice(i + 1, j).map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length))),
    });
    i = j;
  }
  return blocks;
}

/* ---- sh blocks: commands and their output ---------------------------------------- */

/* Whether a command's text goes on past its last line (quotes, \, | && ||, here-documents). */
function continues(text) {
  let quote = null;
  const heredocs = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    if (heredocs.length && quote === null) {
      if (line.replace(/^\t+/, '') === heredocs[0]) heredocs.shift();
      continue;
    }
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quote === "'") { if (c === "'") quote = null; continue; }
      if (c === '\\') { i++; continue; }
      if (quote === '"') { if (c === '"') quote = null; continue; }
      if (c === "'" || c === '"') quote = c;
      else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]))) break;
      else if (c === '<' && line[i + 1] === '<' && line[i + 2] !== '<') {
        const h = /^<<-?\s*(['"]?)([\w.-]+)\1/.exec(line.slice(i));
        if (h) { heredocs.push(h[2]); i += h[0].length - 1; }
      }
    }
  }
  if (quote !== null || heredocs.length) return true;
  const last = lines[lines.length - 1].replace(/\s+#.*$/, '').trimEnd();
  return /(\\|\||&&)$/.test(last) && !/\\\\$/.test(last);
}

/* The steps of a sh block: {cmd, expect (lines, or null: not compared), line}. */
function shSteps(block) {
  const body = block.body;
  const session = body.some((l) => l.startsWith('$ '));
  const steps = [];
  for (let i = 0; i < body.length; i++) {
    const l = body[i];
    if (session && !l.startsWith('$ ')) {
      if (!steps.length) {
        if (l.trim() === '') continue;
        throw new Error(`line ${block.line + 1 + i}: output before any "$ " command`);
      }
      steps[steps.length - 1].expect.push(l);
      continue;
    }
    if (!session && (l.trim() === '' || /^\s*#/.test(l))) continue;
    let cmd = session ? l.slice(2) : l;
    const line = block.line + 1 + i;
    while (continues(cmd) && i + 1 < body.length) cmd += '\n' + body[++i];
    steps.push({ cmd, expect: session ? [] : null, line });
  }
  return steps;
}

/* ---- comparing output ---------------------------------------------------------------- */

/* What a terminal shows of raw output: \r returns, ESC[K erases, colours are dropped. */
function screen(raw) {
  const out = [];
  for (const text of raw.replace(/\r\n/g, '\n').split('\n')) {
    let cells = [], col = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === '\r') { col = 0; continue; }
      if (c === '\x1b') {
        const osc = /^\x1b\][^\x07\x1b]*(\x07|\x1b\\)/.exec(text.slice(i)); /* hyperlinks, titles */
        if (osc) { i += osc[0].length - 1; continue; }
        const m = /^\x1b\[([0-9;?]*)([A-Za-z])/.exec(text.slice(i));
        if (m) {
          if (m[2] === 'K') cells = cells.slice(0, col);
          i += m[0].length - 1;
          continue;
        }
      }
      const cp = text.codePointAt(i);
      if (cp > 0xffff) i++;
      cells[col++] = String.fromCodePoint(cp);
    }
    out.push(Array.from(cells, (x) => x ?? ' ').join('').trimEnd());
  }
  while (out.length && out[out.length - 1] === '') out.pop();
  return out;
}

/* Times and ULIDs stand for any time and any ULID, on both sides. */
function normalise(line) {
  return line
    .replace(/\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?/g, '<time>')
    .replace(/\b[0-9A-HJKMNP-TV-Z]{26}\b/g, '<ulid>');
}

function linePattern(expected) {
  const parts = normalise(expected).split('…').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp('^' + parts.join('.*') + '$');
}

/* Whether the actual lines match the expected ones ("…" alone: any number of lines). */
function matches(expected, actual) {
  const exp = expected.slice();
  while (exp.length && exp[exp.length - 1].trim() === '') exp.pop();
  const memo = new Map();
  const go = (e, a) => {
    const key = e * 100003 + a;
    if (memo.has(key)) return memo.get(key);
    let r;
    if (e === exp.length) r = a === actual.length;
    else if (exp[e].trim() === '…') r = go(e + 1, a) || (a < actual.length && go(e, a + 1));
    else r = a < actual.length && linePattern(exp[e].trimEnd()).test(normalise(actual[a])) && go(e + 1, a + 1);
    memo.set(key, r);
    return r;
  };
  return go(0, 0);
}

/* ---- processes --------------------------------------------------------------------- */

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

function healthy(port) {
  return new Promise((res) => {
    const req = get({ host: '127.0.0.1', port, path: '/health', timeout: 1000 }, (r) => {
      r.resume();
      res(r.statusCode === 200);
    });
    req.on('error', () => res(false));
    req.on('timeout', () => { req.destroy(); res(false); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer(cwd, port, env, logPath) {
  const log = [];
  const p = spawn(join(build, 'events'), ['serve', '--listen', `127.0.0.1:${port}`],
    { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout.on('data', (d) => log.push(d));
  p.stderr.on('data', (d) => log.push(d));
  let exited = false;
  p.on('exit', () => { exited = true; });
  const deadline = Date.now() + SERVER_START_MS;
  while (Date.now() < deadline && !exited) {
    if (await healthy(port)) return { p, log, logPath };
    await sleep(100);
  }
  p.kill('SIGKILL');
  throw new Error(`the test's server did not start on port ${port}:\n${Buffer.concat(log)}`);
}

async function stopServer(s) {
  if (s.p.exitCode === null && s.p.signalCode === null) {
    const done = new Promise((r) => s.p.on('exit', r));
    s.p.kill('SIGTERM');
    const t = setTimeout(() => s.p.kill('SIGKILL'), SERVER_STOP_MS);
    await done;
    clearTimeout(t);
  }
  writeFileSync(s.logPath, Buffer.concat(s.log));
}

/* ---- one file ---------------------------------------------------------------------- */

const q = (s) => "'" + s.replace(/'/g, "'\\''") + "'";

function serveCommand(cmd) {
  return /(^|[\s;&|(])((build\/)?events|\S*\/events)\s+serve\b/.test(cmd) && !/--help/.test(cmd);
}

/*
 * The steps of a file, each {kind, where, cmd, expect}: kind "doc" (a command
 * of the doc), "wait" (for a server a doc started) or "c" (compile and run).
 */
function stepsOf(doc, blocks, ports, work) {
  const port = ports[0];
  const sub = (s) => s.replace(/\b(127\.0\.0\.1|localhost):808(\d)\b/g, (_, h, d) => `${h}:${ports[d]}`);
  const steps = [], skipped = [], errors = [], cleanup = [];
  let ownServer = false, bg = 0, samples = 0;
  for (const b of blocks) {
    if (b.lang !== 'sh' && b.lang !== 'c') {
      if (/^(bash|shell|console|zsh|shell-session)$/.test(b.lang))
        errors.push(`${doc}:${b.line}: a shell block is labelled "${b.lang}": label it sh`);
      continue;
    }
    if (b.skip) { skipped.push({ where: `${doc}:${b.line}`, lang: b.lang, reason: b.skip }); continue; }
    samples++;
    if (b.lang === 'c') {
      const named = /^\s*(?:\/\*|\/\/)\s*([\w.-]+)\.c\b/.exec(b.body[0] || '');
      const name = named ? named[1] : `doc-sample-${b.line}`;
      steps.push({ kind: 'c', where: `${doc}:${b.line}`, name, source: sub(b.body.join('\n')) + '\n' });
      continue;
    }
    let parsed;
    try { parsed = shSteps(b); } catch (e) { errors.push(`${doc}:${b.line}: ${e.message}`); continue; }
    for (const s of parsed) {
      let cmd = sub(s.cmd);
      const step = { kind: 'doc', where: `${doc}:${s.line}`, shown: s.cmd, expect: s.expect && s.expect.map(sub) };
      const s3 = /scripts\/s3-test-server start (\S+)/.exec(cmd);
      if (s3) cleanup.push(`scripts/s3-test-server stop ${s3[1]} >/dev/null 2>&1`);
      const amp = /^([\s\S]*[^&])&\s*$/.exec(cmd.replace(/\s+#[^\n'"]*$/, ''));
      if (amp) {
        const log = join(work, `${basename(doc, '.md')}-background-${++bg}.log`);
        /* a subshell of one command execs it: $! and %1 are the command itself */
        step.cmd = `( ${amp[1]} ) > ${q(log)} 2>&1 &`;
        step.log = log;
        steps.push(step);
        if (serveCommand(amp[1])) {
          ownServer = true;
          const m = /--listen[= ](\S+):(\d+)/.exec(amp[1]);
          const p = m ? Number(m[2]) : port;
          if (p) steps.push({ kind: 'wait', where: step.where, port: p, log });
        }
      } else {
        step.cmd = cmd;
        steps.push(step);
      }
    }
  }
  return { steps, skipped, errors, ownServer, samples, cleanup };
}

/* The shell script of a session: each step between markers the runner reads back. */
function sessionScript(sandbox, steps, prefix) {
  const out = [`stty cols ${COLUMNS} rows 50 2>/dev/null`, `cd ${q(sandbox)} || exit 1`];
  steps.forEach((s, n) => {
    out.push(`printf '\\036S${n}\\036'`);
    if (s.kind === 'doc') {
      out.push(`eval "$(cat <<'EVENTS_DOC_STEP_${n}'`, s.cmd, `EVENTS_DOC_STEP_${n}`, ')"');
    } else if (s.kind === 'wait') {
      out.push(`for __i in $(seq 200); do curl -fs -o /dev/null --max-time 1 http://127.0.0.1:${s.port}/health && break; sleep 0.1; done`);
    } else if (s.kind === 'c') {
      out.push(`cc -std=c11 -Wall -Wextra -Werror -o ${q(s.name)} ${q(s.name + '.c')} ` +
        `$(pkg-config --cflags --libs events sqlite3) -Wl,-rpath,${q(join(prefix, 'lib'))} && ./${q(s.name)}`);
    } else if (s.kind === 'end') {
      out.push('kill -TERM $(jobs -p) 2>/dev/null; wait', ...s.cleanup, 'true');
    }
    out.push(`printf '\\036E${n} %d\\036' $?`);
  });
  return out.join('\n') + '\n';
}

/* Runs the session under script(1); resolves with the raw output of each step and its status. */
function runSession(scriptPath, cwd, env, steps) {
  return new Promise((res) => {
    const child = spawn('script', ['-q', '-e', '-c', `bash --noprofile --norc ${q(scriptPath)}`, '/dev/null'],
      { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let raw = '', current = -1, since = Date.now(), timedOut = null;
    const results = steps.map(() => ({ out: '', status: null }));
    const parse = () => {
      const re = /\x1e([SE])(\d+)(?: (\d+))?\x1e/g;
      let m, last = 0;
      while ((m = re.exec(raw))) {
        if (current >= 0) results[current].out += raw.slice(last, m.index);
        if (m[1] === 'S') { current = Number(m[2]); since = Date.now(); }
        else { results[Number(m[2])].status = Number(m[3]); current = -1; }
        last = re.lastIndex;
      }
      const rest = raw.slice(last);
      const cut = rest.lastIndexOf('\x1e');
      const keep = cut >= 0 && !/\x1e[SE]\d+( \d+)?\x1e/.test(rest.slice(cut)) ? rest.slice(cut) : '';
      if (current >= 0) results[current].out += rest.slice(0, rest.length - keep.length);
      raw = keep;
    };
    child.stdout.on('data', (d) => { raw += d.toString('utf8'); parse(); });
    child.stderr.on('data', (d) => { raw += d.toString('utf8'); parse(); });
    const timer = setInterval(() => {
      if (current >= 0 && Date.now() - since > STEP_TIMEOUT_MS) {
        timedOut = current;
        results[current].out += `\n[the test stopped this step after ${STEP_TIMEOUT_MS / 1000} s]`;
        /* the shell is the leader of the terminal's session: its group holds every job */
        spawnSync('pkill', ['-KILL', '-s', String(sessionOf(child.pid))]);
        try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }, 500);
    child.on('exit', () => {
      clearInterval(timer);
      parse();
      res({ results, timedOut });
    });
  });
}

/* The session id of script's child shell (script makes it a session leader). */
function sessionOf(scriptPid) {
  const r = spawnSync('pgrep', ['-P', String(scriptPid)], { encoding: 'utf8' });
  const pid = (r.stdout || '').trim().split('\n')[0];
  return pid || scriptPid;
}

async function runFile(doc, work, prefix) {
  const name = doc.replace(/[/.]/g, '-');
  const sandbox = join(work, name);
  mkdirSync(sandbox);
  symlinkSync(build, join(sandbox, 'build'));
  symlinkSync(join(src, 'scripts'), join(sandbox, 'scripts'));
  const home = join(work, `${name}-home`);
  mkdirSync(home);
  const ports = [];
  while (ports.length < 10) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const port = ports[0];
  const { steps, skipped, errors, ownServer, samples, cleanup } =
    stepsOf(doc, blocksOf(readFileSync(join(src, doc), 'utf8')), ports, work);
  const report = { doc, skipped, errors: [...errors], ran: 0, samples };
  if (!samples) return report;

  const env = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(EVENTS_|AWS_|NO_COLOR|CDPATH|BASH_ENV|ENV$)/.test(k)) env[k] = v;
  Object.assign(env, {
    PATH: `${join(work, 'bin')}:${process.env.PATH}`, HOME: home, TERM: 'xterm-256color',
    LC_ALL: 'C.UTF-8', COLUMNS: String(COLUMNS), PKG_CONFIG_PATH: join(prefix, 'lib', 'pkgconfig'),
    EVENTS_LISTEN: `127.0.0.1:${port}`,
  });
  for (const s of steps)
    if (s.kind === 'c') writeFileSync(join(sandbox, s.name + '.c'), s.source);
  steps.push({ kind: 'end', where: `${doc} (end)`, cleanup });

  let server = null;
  if (!ownServer) server = await startServer(sandbox, port, env, join(work, `${name}-server.log`));
  const scriptPath = join(work, `${name}-session.sh`);
  writeFileSync(scriptPath, sessionScript(sandbox, steps, prefix));
  const { results, timedOut } = await runSession(scriptPath, sandbox, env, steps);
  if (server) await stopServer(server);

  steps.forEach((s, n) => {
    const r = results[n];
    if (r.status === null && n > 0 && results[n - 1].status === null) return; /* reported once */
    const actual = screen(r.out);
    const fail = (why) => report.errors.push(
      `${s.where}: ${why}\n` +
      (s.shown !== undefined ? `  $ ${s.shown.split('\n').join('\n    ')}\n` : '') +
      (s.expect ? `  expected:\n${s.expect.map((l) => '    | ' + l).join('\n')}\n` : '') +
      `  actual:\n${actual.slice(0, 60).map((l) => '    | ' + l).join('\n')}` +
      (actual.length > 60 ? `\n    (${actual.length - 60} more lines)` : '') +
      (s.log ? `\n  (its output: ${s.log})` : ''));
    if (r.status === null) { fail(timedOut === n ? 'did not finish' : 'not reached'); return; }
    report.ran++;
    if (s.kind === 'wait') {
      if (r.status !== 0) fail(`the server did not answer /health on port ${s.port} (its log: ${s.log})`);
      return;
    }
    if (r.status !== 0) { fail(`exit status ${r.status}`); return; }
    if (s.kind === 'doc' && s.expect && !matches(s.expect, actual)) fail('printed something else');
  });
  return report;
}

/* ---- main -------------------------------------------------------------------------- */

const work = mkdtempSync(join(tmpdir(), 'events-doc-samples-'));
const prefix = join(work, 'prefix');
const inst = spawnSync('cmake', ['--install', build, '--prefix', prefix], { encoding: 'utf8' });
if (inst.status !== 0) {
  console.error(`doc_samples: cmake --install failed:\n${inst.stdout}${inst.stderr}`);
  process.exit(1);
}
mkdirSync(join(work, 'bin'));
symlinkSync(join(build, 'events'), join(work, 'bin', 'events'));

const docs = only.length ? only : ['README.md',
  ...readdirSync(join(src, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
let failures = 0;
const skippedAll = [];
for (const doc of docs) {
  const t0 = Date.now();
  let r;
  try {
    r = await runFile(doc, work, prefix);
  } catch (e) {
    r = { doc, skipped: [], errors: [e.message], ran: 0, samples: 0 };
  }
  skippedAll.push(...r.skipped);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.errors.length) {
    failures += r.errors.length;
    console.log(`FAIL ${doc}: ${r.errors.length} of its steps (${secs} s)`);
    for (const e of r.errors) console.log('  ' + e.split('\n').join('\n  '));
  } else {
    console.log(`ok   ${doc}: ${r.samples} blocks, ${r.ran} steps (${secs} s)` +
      (r.skipped.length ? `, ${r.skipped.length} not run` : ''));
  }
}
console.log(`\nNot run (${skippedAll.length}):`);
for (const s of skippedAll) console.log(`  ${s.where} (${s.lang}): ${s.reason}`);
if (keep || failures) console.log(`\nsandboxes, logs and sessions: ${work}`);
if (!keep && !failures) rmSync(work, { recursive: true, force: true });
process.exit(failures ? 1 : 0);
