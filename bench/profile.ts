// Summarises a V8 CPU profile (node --cpu-prof): self time by function and by
// where the code comes from (ours, a package, Node, GC), for BENCH_PROFILE=1.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled time, idle excluded, in ms. */
  busyMs: number;
  functions: Array<{ name: string; where: string; selfMs: number; share: number }>;
  origins: Array<{ origin: string; selfMs: number; share: number }>;
}

/** Where a function's code lives: our source, an npm package, Node itself, or V8. */
function origin(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : 'native';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1] as string;
  if (url.startsWith('node:')) return 'node';
  const ours = /\/dist\/(.*)$/.exec(url);
  return ours ? `ours:${(ours[1] as string).replace(/\/[^/]+$/, '')}` : url;
}

function shortUrl(url: string): string {
  return url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/').replace(/^node:internal\//, 'node:');
}

export function summariseProfile(profile: CpuProfile): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Self time from the samples and their time deltas (µs): more exact than hitCount × interval.
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  const functions = new Map<string, { name: string; where: string; us: number }>();
  const origins = new Map<string, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') continue;
    busyUs += us;
    const name = functionName || '(anonymous)';
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    const f = functions.get(key) ?? { name, where, us: 0 };
    f.us += us;
    functions.set(key, f);
    const o = origin(url, name);
    origins.set(o, (origins.get(o) ?? 0) + us);
  }
  const share = (us: number): number => (busyUs > 0 ? us / busyUs : 0);
  return {
    busyMs: busyUs / 1000,
    functions: [...functions.values()].sort((a, b) => b.us - a.us).map((f) => ({ name: f.name, where: f.where, selfMs: f.us / 1000, share: share(f.us) })),
    origins: [...origins].sort((a, b) => b[1] - a[1]).map(([o, us]) => ({ origin: o, selfMs: us / 1000, share: share(us) })),
  };
}

/** The one .cpuprofile file a process wrote into `dir`. */
export function readProfile(dir: string): CpuProfile {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${dir}`);
  return JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
}

export function formatSummary(title: string, s: ProfileSummary, top = 20): string {
  const pct = (x: number): string => `${(x * 100).toFixed(1).padStart(5)} %`;
  const lines = [`${title}: ${s.busyMs.toFixed(0)} ms of CPU sampled (idle excluded)`, '  by origin:'];
  for (const o of s.origins.slice(0, 12)) lines.push(`    ${pct(o.share)}  ${o.origin}`);
  lines.push(`  top ${top} functions by self time:`);
  for (const f of s.functions.slice(0, top)) lines.push(`    ${pct(f.share)}  ${f.name}  ${f.where}`);
  return lines.join('\n');
}

// node dist-bench/bench/profile.js DIR: summarise a profile written earlier.
if (process.argv[1]?.endsWith('/profile.js') && process.argv[2]) {
  console.log(formatSummary(process.argv[2], summariseProfile(readProfile(process.argv[2])), Number(process.argv[3] ?? 25)));
}
