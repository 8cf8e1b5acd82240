// Before/after of a change to the request path, in one run: several builds of
// `serve` (each a path to its cli.js) and the bare route, measured in turns so
// that the machine's other work falls on all of them alike.
//   node dist-bench/bench/compare.js before=dist-bench/before/dist/cli.js after=dist/cli.js
// (dist-bench/before: a copy of dist and package.json made before the change).
// A `floor` argument adds the bare route with serve's log line and metrics.
// Env: COMPARE_ROUNDS (3), COMPARE_SECONDS (5), BENCH_PROFILE=1 (a CPU profile summary per build).
import type { ChildProcess } from 'node:child_process';
import { createTestPki } from '../test/helpers/tls.js';
import { formatSummary, readProfile, summariseProfile } from './profile.js';
import { realisticReview } from './review.js';
import { cpuMs, post, saturate, startBare, startFakeApi, startServe, steadyLoad, stop } from './lib.js';

const ROUNDS = Number(process.env['COMPARE_ROUNDS'] ?? 3);
const SECONDS = Number(process.env['COMPARE_SECONDS'] ?? 5);
const PROFILE = process.env['BENCH_PROFILE'] === '1';

interface Sample {
  satRps: number;
  satCpuUs: number;
  steadyCpuUs: number;
  steadyP99: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

async function main(): Promise<void> {
  const targets = process.argv.slice(2).map((a) => {
    const [label, cli] = a.split('=') as [string, string | undefined];
    return { label, cli };
  });
  if (!targets.some((t) => t.label === 'bare')) targets.push({ label: 'bare', cli: undefined });
  const pki = createTestPki();
  const cert = pki.issue('compare');
  const body = realisticReview('shop', 'checkout');
  const fake = await startFakeApi(10_000);
  const samples = new Map<string, Sample[]>(targets.map((t) => [t.label, []]));
  let answerSize = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        let child: ChildProcess;
        let port: number;
        let profileDir: string | undefined;
        const profile = PROFILE && round === 0;
        if (t.cli) {
          const s = await startServe({ kubeconfigPath: fake.kubeconfigPath, cert, ca: pki.caCert, cli: t.cli, profile });
          ({ child, port, profileDir } = s);
          const answer = await post(port, body, pki.caCert);
          if (!answer.text.includes('"patchType":"JSONPatch"')) throw new Error(`${t.label}: the pod was not mutated: ${answer.text}`);
          answerSize = answer.text.length;
        } else {
          ({ child, port, profileDir } = await startBare(cert, answerSize || 1000, profile, t.label === 'floor' ? 'floor' : 'bare'));
        }
        const pid = child.pid!;
        await saturate(port, body, pki.caCert, 2, 16); // warm-up
        let before = cpuMs(pid);
        const sat = await saturate(port, body, pki.caCert, SECONDS, 16);
        const satCpuUs = ((cpuMs(pid) - before) * 1000) / sat.requests.total;
        before = cpuMs(pid);
        const steady = await steadyLoad({ port, body, rate: 1000, seconds: SECONDS, tls: { ca: pki.caCert }, untimedMs: 1000 });
        const steadyCpuUs = ((cpuMs(pid) - before) * 1000) / steady.sent;
        samples.get(t.label)!.push({ satRps: sat.requests.average, satCpuUs, steadyCpuUs, steadyP99: steady.p99 });
        await stop(child);
        if (profileDir) console.log(formatSummary(t.label, summariseProfile(readProfile(profileDir))));
        console.log(`round ${round + 1} ${t.label.padEnd(10)} saturation ${sat.requests.average.toFixed(0)} req/s, ${satCpuUs.toFixed(0)} µs CPU/req; 1,000 req/s: ${steadyCpuUs.toFixed(0)} µs CPU/req, p99 ${steady.p99.toFixed(2)} ms`);
      }
    }
  } finally {
    await stop(fake.child);
  }
  const bare = samples.get('bare')!;
  const bareSat = median(bare.map((s) => s.satCpuUs));
  const bareSteady = median(bare.map((s) => s.steadyCpuUs));
  console.log(`\nmedians of ${ROUNDS} rounds (${SECONDS} s each):`);
  for (const [label, s] of samples) {
    const sat = median(s.map((x) => x.satCpuUs));
    const steady = median(s.map((x) => x.steadyCpuUs));
    console.log(
      `${label.padEnd(10)} saturation ${median(s.map((x) => x.satRps)).toFixed(0).padStart(6)} req/s  CPU/req ${sat.toFixed(0).padStart(4)} µs (${(sat / bareSat).toFixed(2)}x bare)` +
        `   at 1,000 req/s: CPU/req ${steady.toFixed(0).padStart(4)} µs (${(steady / bareSteady).toFixed(2)}x bare), p99 ${median(s.map((x) => x.steadyP99)).toFixed(2)} ms`,
    );
  }
}

await main();
