// Static checks of the Dockerfile and .dockerignore (no Docker engine needed):
// a multi-stage build on a supported Node LTS, production-only dependencies in
// the runtime stage, a numeric non-root USER that matches the manifests, and
// an ENTRYPOINT (+ CMD) that is exactly SERVE_COMMAND, and the reference's
// /webhook entry point (run here with its /app path pointed at the checkout).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { SERVE_COMMAND } from '../helpers/serve-command.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SUPPORTED_NODE_MAJORS = ['22', '24'];

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name?: string;
  instructions: Instruction[];
}

/** Dockerfile instructions: comments and blank lines dropped, `\` continuations joined. */
function parseInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let buffer = '';
  let start = 0;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const trimmed = raw.trim();
    // Comment lines are removed even inside a continued instruction, as Docker does.
    if (trimmed.startsWith('#')) return;
    if (buffer === '' && trimmed === '') return;
    if (buffer === '') start = i + 1;
    if (trimmed.endsWith('\\')) {
      buffer += `${trimmed.slice(0, -1)} `;
      return;
    }
    buffer += trimmed;
    const m = /^(\S+)\s*(.*)$/s.exec(buffer);
    if (m) out.push({ keyword: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start });
    buffer = '';
  });
  if (buffer.trim() !== '') throw new Error('Dockerfile ends inside a continued line');
  return out;
}

/** Replaces ${NAME} / $NAME with the default of a global ARG (those before the first FROM). */
function expand(value: string, args: Map<string, string>): string {
  return value.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, a: string | undefined, b: string | undefined) => args.get(a ?? b ?? '') ?? whole);
}

function parseStages(instructions: Instruction[]): Stage[] {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const image = expand(words[0] ?? '', globalArgs);
      const asIndex = words.findIndex((w) => w.toUpperCase() === 'AS');
      const stage: Stage = { image, instructions: [] };
      if (asIndex >= 0 && words[asIndex + 1]) stage.name = words[asIndex + 1];
      stages.push(stage);
    } else if (stages.length === 0) {
      if (ins.keyword === 'ARG') {
        const [k, v] = ins.args.split('=', 2);
        if (k && v !== undefined) globalArgs.set(k, v.replace(/^"(.*)"$/, '$1'));
      }
    } else {
      (stages[stages.length - 1] as Stage).instructions.push(ins);
    }
  }
  return stages;
}

/** An exec-form (JSON array) argument, or undefined for shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const value: unknown = JSON.parse(args);
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error(`not a string array: ${args}`);
  return value as string[];
}

/** ENV a=b c=d, or the legacy ENV a b. */
function envOf(stage: Stage): Map<string, string> {
  const env = new Map<string, string>();
  for (const ins of stage.instructions.filter((i) => i.keyword === 'ENV')) {
    if (/^\w+=/.test(ins.args)) {
      for (const m of ins.args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) env.set(m[1] as string, (m[2] as string).replace(/^"(.*)"$/, '$1'));
    } else {
      const [k, ...rest] = ins.args.split(/\s+/);
      if (k) env.set(k, rest.join(' '));
    }
  }
  return env;
}

function last(stage: Stage, keyword: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).at(-1);
}

/** Very small .dockerignore matcher: last matching pattern wins, `!` re-includes. */
function dockerIgnored(patterns: string[], file: string): boolean {
  const toRegex = (p: string): RegExp => {
    const body = p
      .replace(/^\/+|\/+$/g, '')
      .split('')
      .map((c, i, all) => {
        if (c === '*') return all[i + 1] === '*' ? '' : all[i - 1] === '*' ? '.*' : '[^/]*';
        if (c === '?') return '[^/]';
        return c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      })
      .join('');
    // A pattern matching a directory also matches everything below it.
    return new RegExp(`^${body}(/.*)?$`);
  };
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const p = negated ? raw.slice(1) : raw;
    if (toRegex(p).test(file)) ignored = !negated;
  }
  return ignored;
}

const dockerfileText = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const stages = parseStages(parseInstructions(dockerfileText));
const runtime = stages.at(-1) as Stage;

t.test('the parser handles continuations, comments and global ARGs', async (t) => {
  const ins = parseInstructions('ARG V=22\n# c\nFROM node:${V}-slim AS b\nRUN a \\\n  # inner comment\n  && b\n\nENV A=1 B="x y"\n');
  t.same(
    ins.map((i) => [i.keyword, i.args]),
    [
      ['ARG', 'V=22'],
      ['FROM', 'node:${V}-slim AS b'],
      ['RUN', 'a  && b'],
      ['ENV', 'A=1 B="x y"'],
    ],
  );
  const st = parseStages(ins);
  t.equal(st[0]?.image, 'node:22-slim');
  t.equal(st[0]?.name, 'b');
  t.same([...envOf(st[0] as Stage)], [['A', '1'], ['B', 'x y']]);
  t.equal(dockerIgnored(['*', '!src'], 'src/cli.ts'), false);
  t.equal(dockerIgnored(['*', '!src'], 'certs/tls.key'), true);
  t.equal(dockerIgnored(['**/*.log'], 'a/b/c.log'), true);
});

t.test('multi-stage build', async (t) => {
  t.ok(stages.length >= 2, `at least two stages (found ${stages.length})`);
  const build = stages[0] as Stage;
  t.ok(build.name, 'the build stage is named so the runtime can COPY --from it');
  const runs = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
  t.ok(runs.some((r) => /\bnpm ci\b/.test(r)), 'build stage runs npm ci');
  t.ok(runs.some((r) => /\bnpm run build\b/.test(r)), 'build stage runs npm run build');
  const firstCi = runs.findIndex((r) => /\bnpm ci\b/.test(r));
  t.notMatch(runs[firstCi], /--omit=dev/, 'the first npm ci installs the dev dependencies (TypeScript)');
  const buildRun = runs.findIndex((r) => /\bnpm run build\b/.test(r));
  t.ok(buildRun > firstCi, 'the build runs after them');
  const prodCi = runs.slice(buildRun).join(' && ').split('&&').findIndex((c) => /\bnpm ci\b/.test(c) && /--omit=dev/.test(c) && /--ignore-scripts/.test(c));
  t.ok(prodCi >= 0, 'then node_modules holds production dependencies only (npm ci --omit=dev --ignore-scripts)');
  // Whatever the build stage copies from the context must exist.
  for (const copy of build.instructions.filter((i) => i.keyword === 'COPY' && !i.args.includes('--from'))) {
    const sources = copy.args.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1);
    for (const src of sources) t.ok(existsSync(path.join(ROOT, src)), `build context has ${src}`);
  }
});

t.test('runtime stage: supported Node LTS, production dependencies only', async (t) => {
  const major = /^(?:node:|gcr\.io\/distroless\/nodejs)(\d+)(?:[.-]|$)/.exec(runtime.image)?.[1];
  t.ok(major && SUPPORTED_NODE_MAJORS.includes(major), `runtime image ${runtime.image} is Node ${SUPPORTED_NODE_MAJORS.join(' or ')}`);
  const buildMajor = /^node:(\d+)/.exec((stages[0] as Stage).image)?.[1];
  t.equal(buildMajor, major, 'build and runtime use the same Node major');
  for (const stage of stages) t.match(stage.image, /@sha256:[0-9a-f]{64}$/, `${stage.name} base pinned by digest`);
  for (const arg of ['BUILD_IMAGE', 'BASE_IMAGE']) t.match(dockerfileText, new RegExp(`^ARG ${arg}=`, 'm'), `the base can be replaced: --build-arg ${arg}=...`);
  // Nothing runs in the runtime stage: it needs no shell and no npm (the distroless base has neither).
  t.same(runtime.instructions.filter((i) => i.keyword === 'RUN'), [], 'the runtime stage runs nothing');
  const modules = runtime.instructions.find((i) => i.keyword === 'COPY' && /--from=build\b/.test(i.args) && /\/src\/node_modules\b/.test(i.args));
  t.ok(modules, 'production node_modules come from the build stage');
  t.equal(envOf(runtime).get('NODE_ENV'), 'production');
  // Measured with npm run soak, which gives serve the same two (bench/soak.ts).
  t.equal(envOf(runtime).get('MALLOC_MMAP_THRESHOLD_'), '65536', 'blocks of 64 KiB and more are mapped apart, and unmapped when freed');
  t.equal(envOf(runtime).get('MALLOC_TRIM_THRESHOLD_'), '65536', 'free memory past 64 KiB at the top of the heap goes back to the system');
  t.equal(last(runtime, 'WORKDIR')?.args, '/app');

  const copies = runtime.instructions.filter((i) => i.keyword === 'COPY');
  t.ok(copies.some((c) => !c.args.includes('--from') && /\bpackage\.json\b/.test(c.args)), 'copies package.json (read by the CLI for --version)');
  const buildNames = stages.slice(0, -1).map((s) => s.name);
  const distCopy = copies.find((c) => /--from=(\S+)/.test(c.args) && /\bdist\/?(\s|$)/.test(c.args));
  t.ok(distCopy, 'copies dist/ from the build stage');
  t.ok(buildNames.includes(/--from=(\S+)/.exec(distCopy?.args ?? '')?.[1]), 'the --from stage exists');
  const dest = distCopy?.args.split(/\s+/).at(-1);
  t.ok(dest === 'dist' || dest === './dist' || dest === 'dist/' || dest === './dist/' || dest === '/app/dist', `dist lands in /app/dist (dest ${dest})`);

  const exposed = runtime.instructions.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/).map((p) => p.replace(/\/tcp$/, '')));
  t.ok(exposed.includes('8443') && exposed.includes('9999'), `EXPOSE 8443 9999 (found ${exposed.join(' ')})`);
});

t.test('compile cache: made by the runtime base as the runtime user, copied in read-only', async (t) => {
  // Node only reads a cache made by the same binary, under the same UID, for the same file paths.
  const dir = envOf(runtime).get('NODE_COMPILE_CACHE');
  t.equal(dir, '/app/compile-cache', 'the runtime sets NODE_COMPILE_CACHE');
  const copy = runtime.instructions.find((i) => i.keyword === 'COPY' && /\bcompile-cache\/?$/.test(i.args));
  const from = stages.find((s) => s.name === /--from=(\S+)/.exec(copy?.args ?? '')?.[1]);
  t.ok(from, `the cache is copied from a stage of the Dockerfile (${copy?.args})`);
  t.match(copy?.args ?? '', /--chown=0:0\b/, 'owned by root: the process cannot rewrite its own code');
  t.equal(from?.image, runtime.image, 'that stage runs on the runtime base (the same node)');
  t.equal(from && last(from, 'USER')?.args, last(runtime, 'USER')?.args, 'as the runtime user');
  t.equal(from && last(from, 'WORKDIR')?.args, last(runtime, 'WORKDIR')?.args, 'in the same directory');
  const run = from && last(from, 'RUN')?.args;
  t.match(run ?? '', /compile-cache\.mjs/, 'it runs image/compile-cache.mjs');
});

t.test('runs as a numeric non-root user matching the manifests', async (t) => {
  const user = last(runtime, 'USER')?.args;
  t.ok(user, 'runtime stage sets USER');
  const m = /^(\d+)(?::(\d+))?$/.exec(user ?? '');
  t.ok(m, `USER ${user} is numeric (runAsNonRoot can only verify a numeric user)`);
  const uid = Number(m?.[1]);
  t.not(uid, 0, 'not root');
  if (m?.[2] !== undefined) t.not(Number(m[2]), 0, 'group is not root');

  const deployment = parseYaml(readFileSync(path.join(ROOT, 'manifests/base/deployment.yaml'), 'utf8')) as {
    spec: { template: { spec: { securityContext?: { runAsUser?: number; runAsGroup?: number }; containers: { securityContext?: { runAsUser?: number; runAsGroup?: number } }[] } } };
  };
  const pod = deployment.spec.template.spec;
  const runAsUser = pod.containers[0]?.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
  const runAsGroup = pod.containers[0]?.securityContext?.runAsGroup ?? pod.securityContext?.runAsGroup;
  t.equal(runAsUser, uid, 'runAsUser in manifests/base/deployment.yaml equals the image USER');
  if (m?.[2] !== undefined) t.equal(runAsGroup, Number(m[2]), 'runAsGroup equals the image USER group');
});

t.test('ENTRYPOINT (+ CMD) is exactly SERVE_COMMAND', async (t) => {
  const entrypoint = last(runtime, 'ENTRYPOINT');
  t.ok(entrypoint, 'runtime stage sets ENTRYPOINT');
  const ep = execForm(entrypoint?.args ?? '');
  t.ok(ep, 'ENTRYPOINT uses the exec form (node is PID 1 and gets SIGTERM)');
  const cmdIns = last(runtime, 'CMD');
  // Setting ENTRYPOINT clears the CMD inherited from the base image (node's
  // CMD ["node"]), so only a CMD of this stage counts.
  const cmd = cmdIns ? execForm(cmdIns.args) : [];
  t.ok(cmd, 'CMD, if any, uses the exec form');
  // The runtime base keeps node at /nodejs/bin/node (distroless), which is not on its PATH.
  const [node, ...rest] = [...(ep ?? []), ...(cmd ?? [])];
  t.equal(node, '/nodejs/bin/node', 'node by its absolute path');
  t.equal(path.basename(node ?? ''), SERVE_COMMAND[0]);
  t.same(rest, SERVE_COMMAND.slice(1));

  // The command must point at what the build produces.
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
  t.equal(pkg.bin?.['pod-identity-webhook'], SERVE_COMMAND[1], 'package bin is the same script');
  t.ok(existsSync(path.join(ROOT, 'src', 'cli.ts')), 'src/cli.ts compiles to dist/cli.js');
});

t.test("/webhook: the reference's entry point runs serve with the manifest's flags", async (t) => {
  const copy = runtime.instructions.find((i) => i.keyword === 'COPY' && i.args.split(/\s+/).at(-1) === '/webhook');
  t.ok(copy, 'the runtime stage copies a file to /webhook (manifests written for the reference run `command: [/webhook, ...]`)');
  const words = (copy?.args ?? '').split(/\s+/);
  const source = words.filter((w) => !w.startsWith('--')).slice(0, -1);
  t.equal(source.length, 1, 'one source file');
  t.notOk(words.some((w) => w.startsWith('--from')), 'from the build context');
  const file = path.join(ROOT, source[0] ?? 'missing');
  const mode = statSync(file).mode;
  t.ok((mode & 0o555) === 0o555, `/webhook is readable and executable by everyone (mode ${mode.toString(8)})`);
  t.ok((mode & 0o022) === 0, 'and writable by nobody but its owner (root)');

  const script = readFileSync(file, 'utf8');
  t.match(script, /^#!\/nodejs\/bin\/node\n/, 'a node script (the runtime image has no shell)');
  const appDir = `${last(runtime, 'WORKDIR')?.args}/`;
  t.ok(script.includes(`${appDir}dist/cli.js`), `it runs ${appDir}dist/cli.js, where the image keeps dist/`);
  t.match(script, /^process\.argv\.splice\(2, 0, 'serve', '--port=443'\);$/m, 'node itself is PID 1 (no shell in between) and gets SIGTERM');

  // The script itself, with the image's /app pointed at this checkout (dist/ is built).
  const dir = mkdtempSync(path.join(tmpdir(), 'piw-webhook-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const local = path.join(dir, 'webhook');
  writeFileSync(local, script.replace('#!/nodejs/bin/node', `#!${process.execPath}`).split(appDir).join(ROOT), { mode: 0o755 });
  const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(local, args, { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const version = run('--version');
  t.equal(version.status, 0, version.stderr);
  t.match(version.stdout.trim(), new RegExp(`^${pkg.version.replace(/\./g, '\\.')} \\(commit `), '/webhook --version prints the version (serve has --version, as the reference)');
  const help = run('--help');
  t.match(help.stdout, /Usage: pod-identity-webhook serve/, 'it is `serve`');
  t.match(help.stdout, /--in-cluster/, 'with the reference\'s flags');
  // The manifest's --port comes after the script's default, and wins.
  const port = run('--in-cluster=false', '--logtostderr', '--port=70000');
  t.equal(port.status, 2);
  t.match(port.stderr, /port 70000 is out of range/, 'the --port of the manifest is the one used');
  t.match(script, /'serve', '--port=443'/, "without one, the reference's port 443 (its manifests' Service targets 443)");
});

t.test('.dockerignore keeps secrets and local builds out of the context', async (t) => {
  const patterns = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  for (const f of ['certs/tls.key', 'certs/ca.crt', 'node_modules/yaml/package.json', 'dist/cli.js', '.git/config', '.tap/x']) {
    t.ok(dockerIgnored(patterns, f), `${f} is not sent to the builder`);
  }
  for (const stage of stages) {
    for (const copy of stage.instructions.filter((i) => i.keyword === 'COPY' && !i.args.includes('--from'))) {
      const sources = copy.args.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1);
      for (const src of sources) t.notOk(dockerIgnored(patterns, src.replace(/^\.\//, '')), `${src} (COPY) is in the context`);
    }
  }
});
