// `serve` takes the reference webhook's command line in every form Go's pflag
// accepts: its manifests' args, the klog flags, booleans bare or with a value,
// -v=2 / -v 2 / --v=2. Durations are shown and accepted in Go's notation.
import t from 'tap';
import { CommanderError } from 'commander';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultNamespace, ineffectiveFlagsGiven, serveCommand, serveOptionsFromFlags } from '../../src/cli/serve.js';
import { durationFlag, formatGoDuration } from '../../src/cli/flags.js';

/** Parses a serve command line without running the server. */
function parse(args: string[]): { opts: Record<string, unknown>; given: string[] } {
  const cmd = serveCommand('9.9.9').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  let opts: Record<string, unknown> = {};
  cmd.action((o: Record<string, unknown>) => {
    opts = o;
  });
  cmd.parse(args, { from: 'user' });
  return { opts, given: ineffectiveFlagsGiven(cmd) };
}

function parseError(args: string[]): string {
  try {
    parse(args);
  } catch (err) {
    if (err instanceof CommanderError) return err.message;
    throw err;
  }
  return '';
}

t.test("the reference's deploy/deployment-base.yaml args", async (t) => {
  const { opts, given } = parse([
    '--in-cluster=false', '--namespace=eks', '--service-name=pod-identity-webhook',
    '--annotation-prefix=eks.amazonaws.com', '--token-audience=sts.amazonaws.com', '--logtostderr',
  ]);
  t.equal(opts['inCluster'], false);
  t.equal(opts['namespace'], 'eks');
  t.equal(opts['annotationPrefix'], 'eks.amazonaws.com');
  t.equal(opts['tokenAudience'], 'sts.amazonaws.com');
  t.equal(opts['port'], 8443, 'our default port (the image runs as non-root)');
  t.same(given, ['--service-name', '--logtostderr'], 'the flags without effect, as given');
});

t.test('a typical community chart', async (t) => {
  const { opts, given } = parse([
    '--in-cluster=false', '--namespace=kube-system', '--port=8443', '--annotation-prefix=eks.amazonaws.com',
    '--token-audience=sts.amazonaws.com', '--logtostderr', '--v=2', '--aws-default-region=eu-west-1',
    '--metrics-port=9090', '--sts-regional-endpoint=true',
  ]);
  t.equal(opts['port'], 8443);
  t.equal(opts['metricsPort'], 9090);
  t.equal(opts['awsDefaultRegion'], 'eu-west-1');
  t.equal(opts['stsRegionalEndpoint'], true);
  t.equal(opts['v'], 2);
  t.same(given, ['--logtostderr', '--v']);
});

t.test('every pflag form of the klog flags', async (t) => {
  for (const args of [['-v=3'], ['-v', '3'], ['-v3'], ['--v=3'], ['--v', '3']]) {
    t.equal(parse(args).opts['v'], 3, args.join(' '));
  }
  t.equal(parse(['--logtostderr']).opts['logtostderr'], true);
  t.equal(parse(['--logtostderr=false']).opts['logtostderr'], false);
  t.equal(parse(['--alsologtostderr=true']).opts['alsologtostderr'], true);
  t.equal(parse(['--skip_headers']).opts['skipHeaders'], true);
  t.equal(parse(['--skip-headers=F']).opts['skipHeaders'], false);
  t.equal(parse(['--log_dir=/var/log']).opts['logDir'], '/var/log');
  t.equal(parse(['--log-dir', '/var/log']).opts['logDir'], '/var/log');
  t.equal(parse(['--log_file', '/x.log']).opts['logFile'], '/x.log');
  t.equal(parse(['--log_file_max_size=1800']).opts['logFileMaxSize'], 1800);
  t.equal(parse(['--vmodule=server=4,patch*=2']).opts['vmodule'], 'server=4,patch*=2');
  t.equal(parse(['--stderrthreshold=INFO']).opts['stderrthreshold'], 'INFO');
  t.equal(parse(['--log_backtrace_at=main.go:10']).opts['logBacktraceAt'], 'main.go:10');
  for (const flag of ['--add_dir_header', '--one_output', '--skip_log_headers']) t.doesNotThrow(() => parse([flag]), flag);
  t.equal(parse(['--tls-secret=webhook-tls']).opts['tlsSecret'], 'webhook-tls');
  // Bad values are refused as pflag refuses them.
  t.match(parseError(['--v=abc']), /argument 'abc' is invalid/);
  t.match(parseError(['--logtostderr=maybe']), /expected true or false/);
  t.match(parseError(['--no-such-flag']), /unknown option '--no-such-flag'/);
});

t.test('--in-cluster: unset, bare, =true, =false', async (t) => {
  t.equal(parse([]).opts['inCluster'], undefined, 'unset: kubectl\'s order');
  t.equal(parse(['--in-cluster']).opts['inCluster'], true);
  t.equal(parse(['--in-cluster=true']).opts['inCluster'], true);
  t.equal(parse(['--in-cluster=0']).opts['inCluster'], false);
});

t.test('--version on serve prints the version', async (t) => {
  let out = '';
  const cmd = serveCommand('9.9.9').exitOverride().configureOutput({ writeOut: (s) => (out += s) });
  const err = t.throws(() => cmd.parse(['--version'], { from: 'user' })) as CommanderError;
  t.equal(err.exitCode, 0);
  t.equal(out.trim(), '9.9.9');
});

t.test('durations: Go notation in and out; a bare number is seconds', async (t) => {
  t.equal(parse(['--service-account-lookup-grace-period=100ms']).opts['serviceAccountLookupGracePeriod'], 100);
  t.equal(parse(['--service-account-lookup-grace-period', '0']).opts['serviceAccountLookupGracePeriod'], 0);
  t.equal(parse(['--shutdown-timeout=3']).opts['shutdownTimeout'], 3000, 'bare number: seconds');
  t.equal(parse(['--resync-period=1m30s']).opts['resyncPeriod'], 90_000);
  t.equal(durationFlag('1h2m3.5s'), 3_723_500);
  for (const [ms, text] of [[0, '0s'], [100, '100ms'], [2000, '2s'], [10_000, '10s'], [60_000, '1m'], [90_000, '1m30s'], [3_600_000, '1h'], [1500, '1.5s']] as const) {
    t.equal(formatGoDuration(ms), text);
    t.equal(durationFlag(text), ms, `${text} parses back`);
  }
  const help = serveCommand('9.9.9').helpInformation();
  t.match(help, /--service-account-lookup-grace-period[^\n]*\(default: 2s\)/);
  t.match(help, /--shutdown-timeout[^\n]*\(default: 10s\)/);
  t.match(help, /--resync-period[^\n]*\(default: 1m\)/);
  t.match(help, /a bare number is seconds/);
  t.notMatch(help, /default: (2000|10000|60000)\)/, 'no milliseconds');
  t.match(help, /Accepted for compatibility with the reference webhook, without effect here:[\s\S]*--logtostderr/);
});

t.test('--namespace defaults to the pod\'s own namespace, else default', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'piw-ns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'namespace');
  t.equal(defaultNamespace(file), 'default', 'outside a pod');
  writeFileSync(file, 'webhooks\n');
  t.equal(defaultNamespace(file), 'webhooks', 'the ServiceAccount namespace file of the pod');
  writeFileSync(file, '');
  t.equal(defaultNamespace(file), 'default', 'an empty file');
  t.equal(parse([]).opts['namespace'], undefined, 'no flag: decided at startup');
});

t.test('--manage-certificates and its flags', async (t) => {
  const settings = (args: string[]) => {
    const { opts } = parse(args);
    return serveOptionsFromFlags(opts as unknown as Parameters<typeof serveOptionsFromFlags>[0], () => undefined).managedCertificates;
  };
  const usage = (args: string[]): string => {
    try {
      settings(args);
    } catch (err) {
      return (err as Error).message;
    }
    return '';
  };
  t.equal(settings([]), undefined, 'off by default: certificates come from files');
  const d = settings(['--manage-certificates']);
  t.match(d, {
    secretName: 'pod-identity-webhook',
    leaseName: 'pod-identity-webhook',
    webhookConfigurationName: 'pod-identity-webhook',
    serviceName: 'pod-identity-webhook',
    caLifetimeMs: 43_800 * 3_600_000,
    certificateLifetimeMs: 8_760 * 3_600_000,
    caOverlapMs: 120_000,
    leaseDurationSeconds: 15,
    leaseRenewMs: 5_000,
    extraDnsNames: [],
    ipAddresses: [],
  }, 'the defaults of MANAGED_CERTS: 43800h, 8760h, names pod-identity-webhook');
  const s = settings([
    '--manage-certificates=true', '--tls-secret=certs', '--lease-name=lock', '--webhook-configuration-name=piw.example.com',
    '--service-name=svc', '--ca-lifetime=720h', '--certificate-lifetime=24h', '--ca-overlap=30s', '--lease-duration=9s',
    '--certificate-ip-addresses=127.0.0.1,::1', '--certificate-ip-addresses', '10.0.0.1', '--certificate-dns-names=webhook.example.com',
  ]);
  t.match(s, {
    secretName: 'certs', leaseName: 'lock', webhookConfigurationName: 'piw.example.com', serviceName: 'svc',
    caLifetimeMs: 720 * 3_600_000, certificateLifetimeMs: 86_400_000, caOverlapMs: 30_000, leaseDurationSeconds: 9, leaseRenewMs: 3_000,
    ipAddresses: ['127.0.0.1', '::1', '10.0.0.1'], extraDnsNames: ['webhook.example.com'],
  });
  t.match(parseError(['--ca-lifetime=5 years']), /--ca-lifetime <duration>' argument '5 years' is invalid. expected a duration/, 'Go durations only');
  t.match(parseError(['--certificate-lifetime=-1h']), /argument '-1h' is invalid/);
  t.match(usage(['--manage-certificates', '--certificate-lifetime=1s']), /^--certificate-lifetime 1s is too short \(at least 10s\)$/);
  t.match(usage(['--manage-certificates', '--ca-lifetime=10m', '--ca-overlap=2m']), /--ca-lifetime 10m must be at least 9 times --ca-overlap 2m/);
  t.match(usage(['--manage-certificates', '--lease-duration=1s']), /--lease-duration 1s is too short/);
  t.match(usage(['--manage-certificates', '--certificate-ip-addresses=localhost']), /"localhost" is not an IP address/);
  t.match(usage(['--manage-certificates', '--tls-secret=Not_A_Name']), /--tls-secret "Not_A_Name" is not a valid object name/);
  t.match(usage(['--manage-certificates', '--service-name=a.b']), /--service-name "a.b" is not a valid Service name/);
  t.equal(usage(['--ca-lifetime=1s']), '', 'without --manage-certificates the certificate flags are not checked');
  // Without --manage-certificates they change nothing, and are reported as such.
  t.same(parse(['--tls-secret=x', '--lease-name=y']).given, ['--tls-secret', '--lease-name']);
  t.same(parse(['--manage-certificates', '--tls-secret=x', '--service-name=s']).given, [], 'with it they are in effect');
  const help = serveCommand('9.9.9').helpInformation();
  t.match(help, /--ca-lifetime[^\n]*\(default: 43800h\)/);
  t.match(help, /--certificate-lifetime[^\n]*\(default: 8760h\)/);
});
