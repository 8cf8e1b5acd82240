// The layers of src/ import one way only: each directory may import the ones
// listed for it and nothing else, so a cycle or an upward import fails here
// rather than in a review. The pure layers (settings, mutation) also do no I/O.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, resolve } from 'node:path';

const SRC = resolve(import.meta.dirname, '..', '..', 'src');

const ALLOWED: Record<string, readonly string[]> = {
  config: [],
  settings: ['config'],
  mutation: ['config', 'settings'],
  files: ['config'],
  kube: ['config'],
  tls: ['config', 'files'],
  identity: ['config', 'settings', 'kube', 'files'],
  oidc: ['config', 'kube', 'tls'],
  certificates: ['config', 'kube', 'tls'],
  doctor: ['config', 'settings', 'mutation', 'kube', 'oidc', 'tls'],
  server: ['config', 'settings', 'mutation', 'identity', 'kube', 'tls', 'files', 'certificates'],
  cli: ['config', 'settings', 'mutation', 'identity', 'kube', 'tls', 'files', 'oidc', 'certificates', 'doctor', 'server'],
};
/** Modules the pure layers may use: no file system, network, processes or clocks of their own. */
const PURE = new Set(['settings', 'mutation']);
const PURE_MODULES = new Set(['node:path', 'fast-json-patch', '@kubernetes/client-node']);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** src/cli/serve.ts -> cli; src/config.ts -> config; src/cli.ts (the entry point) -> cli. */
const layerOf = (file: string): string => {
  const parts = relative(SRC, file).split('/');
  return parts.length > 1 ? (parts[0] ?? '') : (parts[0] ?? '').replace(/\.[jt]s$/, '');
};

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\s)(?:import|export)\s[^'";]*?from\s*'([^']+)'|import\(\s*'([^']+)'\s*\)/gm)].map((m) => m[1] ?? m[2] ?? '');
}

const files = sources(SRC);

t.test('every file of src/ is in a known layer', async (t) => {
  const unknown = [...new Set(files.map(layerOf))].filter((l) => !(l in ALLOWED));
  t.same(unknown, [], 'a new directory needs its place in ALLOWED');
});

t.test('layers import only the layers below them', async (t) => {
  const wrong: string[] = [];
  let edges = 0;
  for (const file of files) {
    const from = layerOf(file);
    for (const spec of importsOf(file)) {
      if (!spec.startsWith('.')) continue;
      const to = layerOf(normalize(join(dirname(file), spec)));
      if (to === from) continue;
      edges++;
      if (!(ALLOWED[from] ?? []).includes(to)) wrong.push(`${relative(SRC, file)} imports ${spec} (${from} -> ${to})`);
    }
  }
  t.ok(edges > 50, `the scan finds the imports (${edges} across layers)`);
  t.same(wrong, []);
});

t.test('the pure layers do no I/O', async (t) => {
  const wrong: string[] = [];
  for (const file of files.filter((f) => PURE.has(layerOf(f)))) {
    for (const spec of importsOf(file)) {
      if (!spec.startsWith('.') && !PURE_MODULES.has(spec)) wrong.push(`${relative(SRC, file)} imports ${spec}`);
    }
  }
  t.same(wrong, []);
});

t.test('the allowed graph itself has no cycle', async (t) => {
  const state = new Map<string, 'visiting' | 'done'>();
  const cycle: string[] = [];
  const visit = (layer: string, path: string[]): void => {
    if (state.get(layer) === 'done' || cycle.length > 0) return;
    if (state.get(layer) === 'visiting') {
      cycle.push(...path, layer);
      return;
    }
    state.set(layer, 'visiting');
    for (const next of ALLOWED[layer] ?? []) visit(next, [...path, layer]);
    state.set(layer, 'done');
  };
  for (const layer of Object.keys(ALLOWED)) visit(layer, []);
  t.same(cycle, []);
});
