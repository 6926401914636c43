/*
 * serve.mjs - the browser tests' server: `events serve` on a free loopback
 * port, started and waited for until it logs "listening" (20 s at most).
 * run.sh copies it next to the test script it runs.
 */
import { spawn } from 'node:child_process';

/*
 * Starts BIN serve ARGS (--listen 127.0.0.1:0 added); resolves with {server, base, log}: the
 * process, its URL, and a function giving its stderr so far (for a failing test's output).
 */
export async function startServer(bin, args) {
  const server = spawn(bin, ['serve', '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start:\n' + log)), 20000);
    server.stderr.on('data', (d) => {
      log += d;
      const m = /msg="listening" addr=([0-9.:]+)/.exec(log);
      if (m) { clearTimeout(timer); resolve('http://' + m[1]); }
    });
    server.on('exit', () => reject(new Error('the server exited:\n' + log)));
  });
  return { server, base, log: () => log };
}
