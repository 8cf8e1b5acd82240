// --compose-role-arn: bare role names become full ARNs, with the account and
// partition from flags or from EC2 instance metadata (IMDSv2), here a local
// HTTP stand-in reached through AWS_EC2_METADATA_SERVICE_ENDPOINT.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { composeRoleArn, partitionOfRegion } from '../../src/settings/role-arn.js';
import { compositionFromInstanceMetadata, instanceMetadataEndpoint } from '../../src/identity/instance-metadata.js';
import { parseServiceAccountAnnotations } from '../../src/settings/service-account.js';
import { roleArnCompositionFromFlags } from '../../src/cli/serve.js';
import { CommandError, UsageError } from '../../src/cli/flags.js';

const ACCOUNT = '111122223333';

t.test('a bare role name or path is completed; anything else is left alone', async (t) => {
  const c = { partition: 'aws', accountId: ACCOUNT };
  t.equal(composeRoleArn('my-role', c), `arn:aws:iam::${ACCOUNT}:role/my-role`);
  t.equal(composeRoleArn('team/my-role', c), `arn:aws:iam::${ACCOUNT}:role/team/my-role`);
  t.equal(composeRoleArn('a+b=c,d.e@f_g-h', { partition: 'aws-cn', accountId: ACCOUNT }), `arn:aws-cn:iam::${ACCOUNT}:role/a+b=c,d.e@f_g-h`);
  t.equal(composeRoleArn('arn:aws:iam::999988887777:role/x', c), 'arn:aws:iam::999988887777:role/x', 'a full ARN stays');
  t.equal(composeRoleArn('my-role', undefined), 'my-role', 'without --compose-role-arn nothing changes');
  for (const odd of ['/lead', 'trail/', 'a//b', 'with space', 'x:y', '']) t.equal(composeRoleArn(odd, c), odd, `"${odd}" is not a role name`);
});

t.test('ServiceAccount parsing composes the role-arn annotation', async (t) => {
  const c = { partition: 'aws-us-gov', accountId: ACCOUNT };
  const s = parseServiceAccountAnnotations({ 'eks.amazonaws.com/role-arn': ' team/reader ' }, 'eks.amazonaws.com', c);
  t.equal(s.roleArn, `arn:aws-us-gov:iam::${ACCOUNT}:role/team/reader`);
  t.same(s.warnings, [], 'a composed ARN is well formed');
  const plain = parseServiceAccountAnnotations({ 'eks.amazonaws.com/role-arn': 'reader' }, 'eks.amazonaws.com');
  t.equal(plain.roleArn, 'reader');
  t.match(plain.warnings[0], /is not a role ARN/, 'without composition a bare name is still flagged');
});

t.test('partition from the region prefix', async (t) => {
  for (const [region, partition] of [
    ['us-east-1', 'aws'], ['eu-west-1', 'aws'], ['cn-north-1', 'aws-cn'], ['us-gov-west-1', 'aws-us-gov'],
    ['us-iso-east-1', 'aws-iso'], ['us-isob-east-1', 'aws-iso-b'],
  ]) t.equal(partitionOfRegion(region as string), partition, region as string);
});

interface StandIn {
  endpoint: string;
  requests: string[];
  server: Server;
}

/** Closes a stand-in early: its endpoint then refuses connections. */
function closeStandIn(s: StandIn): Promise<void> {
  return new Promise((r) => {
    s.server.closeAllConnections();
    s.server.close(() => r());
  });
}

async function imds(t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<StandIn> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const standIn = { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server };
  t.teardown(() => (server.listening ? closeStandIn(standIn) : undefined));
  return standIn;
}

/** IMDSv2 as EC2 answers: a token for a PUT, the document only with that token. */
function ec2(document: unknown): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (req.method === 'PUT' && req.url === '/latest/api/token' && req.headers['x-aws-ec2-metadata-token-ttl-seconds']) {
      res.end('session-token');
    } else if (req.method === 'GET' && req.url === '/latest/dynamic/instance-identity/document') {
      if (req.headers['x-aws-ec2-metadata-token'] !== 'session-token') {
        res.statusCode = 401;
        res.end();
        return;
      }
      res.setHeader('content-type', 'text/plain');
      res.end(typeof document === 'string' ? document : JSON.stringify(document));
    } else {
      res.statusCode = 404;
      res.end();
    }
  };
}

t.test('instance metadata: IMDSv2 token, then the identity document', async (t) => {
  const s = await imds(t, ec2({ accountId: ACCOUNT, region: 'cn-northwest-1', instanceId: 'i-1' }));
  t.same(await compositionFromInstanceMetadata(s.endpoint, 5000), { partition: 'aws-cn', accountId: ACCOUNT });
  t.same(s.requests, ['PUT /latest/api/token', 'GET /latest/dynamic/instance-identity/document']);
});

t.test('instance metadata failures are one clear error, within the timeout', async (t) => {
  const bad = await imds(t, ec2({ region: 'us-east-1' }));
  await t.rejects(compositionFromInstanceMetadata(bad.endpoint, 5000), /instance metadata at http:\/\/127\.0\.0\.1:\d+: identity document has no 12-digit accountId/);
  const notJson = await imds(t, ec2('<html>'));
  await t.rejects(compositionFromInstanceMetadata(notJson.endpoint, 5000), /identity document is not JSON/);
  const huge = await imds(t, ec2('x'.repeat(200_000)));
  await t.rejects(compositionFromInstanceMetadata(huge.endpoint, 5000), /larger than 65536 bytes/);
  const v1only = await imds(t, (_req, res) => {
    res.statusCode = 403;
    res.end();
  });
  await t.rejects(compositionFromInstanceMetadata(v1only.endpoint, 5000), /session token: HTTP 403/);
  // An endpoint that accepts the connection and never answers.
  const silent = await imds(t, () => {});
  await t.rejects(compositionFromInstanceMetadata(silent.endpoint, 200), /no answer within 200 ms/);
  const closed = await imds(t, () => {});
  const closedEndpoint = closed.endpoint;
  await closeStandIn(closed);
  await t.rejects(compositionFromInstanceMetadata(closedEndpoint, 5000), /instance metadata at http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
});

t.test('serve\'s flags: --aws-account-id and --aws-partition first, instance metadata only without them', async (t) => {
  const s = await imds(t, ec2({ accountId: '444455556666', region: 'us-gov-east-1' }));
  const env = { AWS_EC2_METADATA_SERVICE_ENDPOINT: `${s.endpoint}/` };
  t.equal(instanceMetadataEndpoint(env), s.endpoint);
  t.equal(instanceMetadataEndpoint({}), 'http://169.254.169.254');
  t.equal(await roleArnCompositionFromFlags({ composeRoleArn: false, awsPartition: 'aws' }, false, env), undefined);
  t.same(await roleArnCompositionFromFlags({ composeRoleArn: true, awsAccountId: ACCOUNT, awsPartition: 'aws' }, false, env), { partition: 'aws', accountId: ACCOUNT });
  t.same(await roleArnCompositionFromFlags({ composeRoleArn: true, awsAccountId: ACCOUNT, awsPartition: 'aws-cn' }, true, env), { partition: 'aws-cn', accountId: ACCOUNT });
  t.same(s.requests, [], 'no instance metadata asked while the flags say it all');
  t.same(await roleArnCompositionFromFlags({ composeRoleArn: true, awsPartition: 'aws' }, false, env), { partition: 'aws-us-gov', accountId: '444455556666' });
  t.same(await roleArnCompositionFromFlags({ composeRoleArn: true, awsPartition: 'aws-iso' }, true, env), { partition: 'aws-iso', accountId: '444455556666' }, 'an explicit --aws-partition wins');
  const badAccount = await roleArnCompositionFromFlags({ composeRoleArn: true, awsAccountId: '12', awsPartition: 'aws' }, false, env).catch((e: unknown) => e);
  t.ok(badAccount instanceof UsageError);
  t.match((badAccount as Error).message, /--aws-account-id "12" is not a 12-digit AWS account id/);
  const badPartition = await roleArnCompositionFromFlags({ composeRoleArn: true, awsPartition: 'AWS!' }, true, env).catch((e: unknown) => e);
  t.ok(badPartition instanceof UsageError);
  const closed = await imds(t, () => {});
  await closeStandIn(closed);
  const err = await roleArnCompositionFromFlags({ composeRoleArn: true, awsPartition: 'aws' }, false, { AWS_EC2_METADATA_SERVICE_ENDPOINT: closed.endpoint }).catch((e: unknown) => e);
  t.ok(err instanceof CommandError);
  t.match((err as Error).message, /^--compose-role-arn needs the AWS account: give --aws-account-id \(and --aws-partition\), or run on EC2 \(instance metadata at http:\/\/127\.0\.0\.1:\d+: /);
});
