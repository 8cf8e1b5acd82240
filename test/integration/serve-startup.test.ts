// A webhook that cannot start must say why in one line and exit, not linger
// half-started (a zombie that lists ServiceAccounts but serves nothing).
import t from 'tap';
import { createServer, type Server } from 'node:net';
import { startFakeApiServer } from '../helpers/fake-apiserver.js';
import { createTestPki } from '../helpers/tls.js';
import { SERVE_COMMAND } from '../helpers/serve-command.js';
import { spawnTied } from '../helpers/child.js';

function occupy(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

// The exit is the signal waited for; a process that lingers instead is caught by
// the file's timeout (and dies with the test process, see helpers/child.ts).
function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const [cmd, ...rest] = SERVE_COMMAND;
  const child = spawnTied(cmd, [...rest, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c) => (stderr += c));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stderr })));
}

t.test('a port in use ends the process with one line and exit code 1', async (t) => {
  const fake = await startFakeApiServer();
  t.teardown(() => fake.close());
  const serving = createTestPki().issue('startup');
  const taken = await occupy();
  t.teardown(() => new Promise<void>((r) => taken.server.close(() => r())));
  const common = ['--kubeconfig', fake.kubeconfigPath, '--tls-cert', serving.certFile, '--tls-key', serving.keyFile, '--bind-address', '127.0.0.1'];
  for (const [name, ports] of [['HTTPS port', ['--port', String(taken.port), '--metrics-port', '0']], ['metrics port', ['--port', '0', '--metrics-port', String(taken.port)]]] as const) {
    const r = await run([...common, ...ports]);
    t.equal(r.code, 1, `${name}: exit code 1`);
    t.match(r.stderr, new RegExp(`^error: cannot listen on 127\\.0\\.0\\.1:${taken.port}: address already in use$`, 'm'), name);
    t.notMatch(r.stderr, /\n\s+at /, `${name}: no stack trace`);
  }
});
