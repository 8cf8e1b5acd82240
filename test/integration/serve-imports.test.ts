// What `serve` loads: not @kubernetes/client-node (a dev dependency, for types
// only: loading it costs ~75 MiB and ~0.8 s), and not the code of the other
// commands (certificates, doctor, OIDC). Checked on the built program with a
// module hook that records every module the process resolves.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? jsFiles(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : []);
}

t.test('@kubernetes/client-node is a dev dependency that no built file imports', async (t) => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  t.notOk('@kubernetes/client-node' in pkg.dependencies, 'not a runtime dependency');
  const importing = jsFiles('dist').filter((f) => readFileSync(f, 'utf8').includes('@kubernetes/client-node'));
  t.same(importing, [], 'no file of dist/ names it (type-only imports are erased)');
});

t.test('serve resolves only the modules it needs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'piw-imports-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'resolved');
  writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, r.url + '\\n');
  return r;
}
`);
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`);
  writeFileSync(log, '');
  // --help builds the whole serve command and exits: everything serve imports is loaded by then.
  const run = spawnSync(process.execPath, ['--import', pathToFileURL(join(dir, 'register.mjs')).href, 'dist/cli.js', 'serve', '--help'], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  const resolved = readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
  t.ok(resolved.some((u) => u.endsWith('/dist/cli/serve.js')), 'the hook saw serve itself');
  t.ok(resolved.some((u) => u.includes('/node_modules/fastify/')), 'and its packages');
  const unwanted = resolved.filter((u) =>
    /node_modules\/(@kubernetes|selfsigned|@peculiar|fast-json-patch)\//.test(u) ||
    /\/dist\/(doctor|oidc)\//.test(u) ||
    /\/dist\/cli\/(certs|doctor|oidc|mutate|completion|program)\.js$/.test(u) ||
    /\/dist\/tls\/certificates\.js$/.test(u));
  t.same(unwanted, [], 'nothing of the other commands, and no generated API client');
});
