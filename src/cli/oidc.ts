// `oidc`: writes the discovery document and JWKS of a service account issuer,
// for a static HTTPS host (S3, ...) that AWS STS can reach, and prints the
// API server flags and the IAM provider that go with them.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import { fetchServedIssuer } from '../oidc/cluster.js';
import {
  buildJwks,
  DISCOVERY_PATH,
  type DiscoveryDocument,
  discoveryDocument,
  discoveryUrl,
  issuerProblem,
  type Jwk,
  type Jwks,
  jwkFromPublicKey,
  JWKS_FILE,
  jwksUri,
  KeyError,
  publicKeysFromPem,
  STS_AUDIENCE,
} from '../oidc/keys.js';
import { writeFileAtomic } from '../tls/files.js';
import { reportFailure } from './certs.js';
import { addKubeConnectionFlags, kubeConfigFromFlags, UsageError } from './flags.js';
import { readText } from './input.js';
import type { CommandIO } from './mutate.js';

export interface OidcFlags {
  issuer?: string;
  publicKey?: string[];
  fromCluster?: boolean;
  out?: string;
  legacyEmptyKid?: boolean;
  kubeconfig?: string;
  kubeApi?: string;
  context?: string;
}

export interface OidcResult {
  discovery: DiscoveryDocument | Record<string, unknown>;
  jwks: Jwks;
  files: string[];
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function jwksFromFiles(files: string[]): Jwk[] {
  const jwks: Jwk[] = [];
  for (const file of files) {
    const text = readText('--public-key', file);
    try {
      jwks.push(...publicKeysFromPem(text, file).map(jwkFromPublicKey));
    } catch (err) {
      if (err instanceof KeyError) throw new UsageError(`--public-key ${file}: ${err.message}`);
      throw err;
    }
  }
  return jwks;
}


function validate(flags: OidcFlags): { issuer: string; out: string; publicKeys: string[] } {
  const issuer = flags.issuer;
  // Commander requires --issuer and --out and refuses --from-cluster with --public-key; an empty value gets here.
  if (!issuer) throw new UsageError('--issuer is required (the public HTTPS URL the documents will be served from)');
  const problem = issuerProblem(issuer);
  if (problem) throw new UsageError(`--issuer "${issuer}" ${problem}`);
  if (!flags.out) throw new UsageError('--out is required (the directory to write the documents to)');
  const publicKeys = flags.publicKey ?? [];
  if (!flags.fromCluster && publicKeys.length === 0) throw new UsageError('give --public-key FILE (repeatable) or --from-cluster');
  return { issuer, out: flags.out, publicKeys };
}

function printInstructions(io: CommandIO, publicKeys: string[], issuer: string, out: string): void {
  const lines = [
    '',
    'Publish these over HTTPS (as application/json) so that STS can fetch them:',
    `  ${discoveryUrl(issuer)}  <- ${join(out, DISCOVERY_PATH)}`,
    `  ${jwksUri(issuer)}  <- ${join(out, JWKS_FILE)}`,
    // S3 guesses the content type from the extension, and openid-configuration has none.
    `  e.g. aws s3 cp ${join(out, DISCOVERY_PATH)} s3://BUCKET/PATH/${DISCOVERY_PATH} --content-type application/json`,
    `       aws s3 cp ${join(out, JWKS_FILE)} s3://BUCKET/PATH/${JWKS_FILE} --content-type application/json`,
    '',
    'kube-apiserver flags:',
    `  --service-account-issuer=${issuer}`,
  ];
  if (publicKeys.length === 0) {
    lines.push('  (keep --service-account-key-file and --service-account-signing-key-file as they are: keys.json holds the keys in use)');
  } else {
    for (const file of publicKeys) lines.push(`  --service-account-key-file=${file}`);
    const whose = publicKeys.length === 1 ? `of ${publicKeys[0]}` : 'matching one of the keys above';
    lines.push(`  --service-account-signing-key-file=<the private key ${whose}>`);
    lines.push('  (when rotating keys, keep the old public key in --service-account-key-file and keys.json until the tokens it signed expire)');
  }
  lines.push(
    '  --api-audiences: keep the current value (by default the issuer). Do not add ' +
      `${STS_AUDIENCE}: the webhook requests it per token, and listing it would let tokens meant for STS log in to the API server.`,
    '',
    'IAM OIDC identity provider:',
    `  aws iam create-open-id-connect-provider --url ${issuer} --client-id-list ${STS_AUDIENCE}`,
  );
  for (const line of lines) io.stdout(line);
}

export async function runOidc(flags: OidcFlags, io: CommandIO): Promise<OidcResult> {
  const { issuer, out, publicKeys } = validate(flags);
  let discovery: OidcResult['discovery'];
  let jwks: Jwks;
  if (flags.fromCluster) {
    const served = await fetchServedIssuer(kubeConfigFromFlags(flags));
    jwks = flags.legacyEmptyKid ? buildJwks(served.jwks.keys, { legacyEmptyKid: true }) : served.jwks;
    // Everything as served except where the documents now live.
    discovery = { ...served.discovery, issuer, jwks_uri: jwksUri(issuer) };
    if (served.discovery['issuer'] !== issuer) {
      io.stderr(
        `warning: the API server's issuer is ${String(served.discovery['issuer'])}; tokens verify against ${issuer} only ` +
          `once kube-apiserver runs with --service-account-issuer=${issuer} (list the old issuer as a second ` +
          '--service-account-issuer to keep existing tokens valid)',
      );
    }
  } else {
    jwks = buildJwks(jwksFromFiles(publicKeys), { legacyEmptyKid: flags.legacyEmptyKid });
    discovery = discoveryDocument(issuer, jwks.keys.map((k) => k.alg));
  }

  const jwksPath = join(out, JWKS_FILE);
  const discoveryPath = join(out, DISCOVERY_PATH);
  mkdirSync(dirname(discoveryPath), { recursive: true });
  // Keys first: the discovery document should never point at keys not yet published.
  writeFileAtomic(jwksPath, `${JSON.stringify(jwks, null, 2)}\n`, 0o644);
  writeFileAtomic(discoveryPath, `${JSON.stringify(discovery, null, 2)}\n`, 0o644);
  const described = jwks.keys.map((k) => `${String(k.alg ?? k.kty)} kid "${String(k.kid ?? '')}"`).join(', ');
  io.stdout(`${jwksPath}: wrote ${jwks.keys.length} key(s): ${described}`);
  io.stdout(`${discoveryPath}: wrote (issuer ${issuer})`);
  printInstructions(io, publicKeys, issuer, out);
  return { discovery, jwks, files: [jwksPath, discoveryPath] };
}

export function oidcCommand(io: CommandIO): Command {
  const cmd = new Command('oidc')
    .description('write the OIDC discovery document and JWKS (keys.json) of the service account issuer, for a public HTTPS host')
    .addOption(new Option('--issuer <url>', 'public HTTPS URL of the issuer (the documents are served below it)').makeOptionMandatory())
    .option('--public-key <file>', 'PEM public key (or certificate) the API server verifies tokens with (repeatable)', collect)
    .addOption(new Option('--from-cluster', 'take the keys and discovery document from the API server instead').conflicts('publicKey'))
    .addOption(new Option('--out <dir>', 'directory to write .well-known/openid-configuration and keys.json to').makeOptionMandatory())
    .option('--legacy-empty-kid', 'also publish every key with kid "" (tokens issued before Kubernetes 1.16)');
  return addKubeConnectionFlags(cmd, ' for --from-cluster')
    .action(async (flags: OidcFlags) => {
      try {
        await runOidc(flags, io);
      } catch (err) {
        reportFailure(err, io);
      }
    });
}
