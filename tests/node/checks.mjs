/*
 * checks.mjs - what the Node.js tests that drive a real server share (tests/otlp,
 * tests/webhooks; their run.sh copies it beside the script): counted checks, where a
 * failure is printed and the run goes on (check, eq; tally.failures decides the exit
 * status), a free loopback port, and sleep.
 */
import { createServer } from 'node:http';

export const tally = { checks: 0, failures: 0 };

export function check(ok, what) {
  tally.checks++;
  if (!ok) {
    tally.failures++;
    console.log(`FAIL ${what}`);
  }
}

/* Compares as JSON text: member order counts, undefined members vanish. */
export function eq(actual, expected, what) {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  check(a === e, `${what}: expected ${e}, got ${a}`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* A TCP port of 127.0.0.1 nobody listens on (just now). */
export function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}
