// What the built program loads (dist/ is an esbuild bundle: scripts/build.mjs).
// `serve` must not load @kubernetes/client-node (a dev dependency, for types
// only: loading it costs ~75 MiB and ~0.8 s), nor the code of the other
// commands (certificates, doctor, OIDC). Checked on the built program: a module
// hook records every file the process resolves, and esbuild's per-module
// comments ("// src/...", "// node_modules/...") tell what those files hold.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? jsFiles(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : []);
}

/** The modules a bundled file holds, from esbuild's comments: "src/cli/serve.ts", "node_modules/fastify/fastify.js", … */
function modulesIn(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^\/\/ ((?:src|node_modules)\/\S+)$/gm)].map((m) => m[1] as string);
}

/** The files of dist/ a command resolves while it runs, under a module hook. */
function resolvedBy(t: Test, args: string[]): string[] {
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
  const run = spawnSync(process.execPath, ['--import', pathToFileURL(join(dir, 'register.mjs')).href, 'dist/cli.js', ...args], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  return readFileSync(log, 'utf8').split('\n').filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u));
}

t.test('@kubernetes/client-node is a dev dependency that no built file holds', async (t) => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  t.notOk('@kubernetes/client-node' in pkg.dependencies, 'not a runtime dependency');
  const holding = jsFiles('dist').filter((f) => modulesIn(f).some((m) => m.startsWith('node_modules/@kubernetes/')));
  t.same(holding, [], 'no file of dist/ holds it (type-only imports are erased)');
  t.ok(jsFiles('dist').some((f) => modulesIn(f).includes('src/cli/serve.ts')), 'the module comments this test reads are there');
});

t.test('serve loads only the modules it needs, all from the bundle', async (t) => {
  // --help builds the whole serve command and exits: everything serve imports is loaded by then.
  const files = resolvedBy(t, ['serve', '--help']);
  t.same(files.filter((f) => !f.includes('/dist/')), [], 'nothing from node_modules or src/: the bundle holds it all');
  const modules = files.flatMap(modulesIn);
  t.ok(modules.includes('src/cli/serve.ts'), 'the hook saw serve itself');
  t.ok(modules.some((m) => m.startsWith('node_modules/fastify/')), 'and its packages');
  const unwanted = modules.filter((m) =>
    /^node_modules\/(@kubernetes|selfsigned|@peculiar|fast-json-patch|ajv)\//.test(m) ||
    /^src\/(doctor|oidc)\//.test(m) ||
    /^src\/cli\/(certs|doctor|oidc|mutate|completion|program)\.ts$/.test(m) ||
    m === 'src/tls/certificates.ts' || m === 'node_modules/fast-json-stringify/index.js');
  t.same(unwanted, [], 'nothing of the other commands, no generated API client, no schema compiler');
});

t.test('the other commands are in the bundle too', async (t) => {
  const modules = resolvedBy(t, ['doctor', '--help']).flatMap(modulesIn);
  t.ok(modules.includes('src/cli/doctor.ts'), 'doctor loads its own chunk');
});
