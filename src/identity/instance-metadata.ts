// --compose-role-arn without --aws-partition/--aws-account-id: the partition and
// account of the EC2 instance this runs on, from instance metadata (IMDSv2).
import { ACCOUNT_ID, partitionOfRegion, type RoleArnComposition } from '../settings/role-arn.js';

export class InstanceMetadataError extends Error {}

/** The instance metadata service, overridable like the AWS SDKs do (AWS_EC2_METADATA_SERVICE_ENDPOINT). */
export function instanceMetadataEndpoint(env: Readonly<Record<string, string | undefined>> = process.env): string {
  return (env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] ?? 'http://169.254.169.254').replace(/\/+$/, '');
}

/** At most this much of the identity document is read: it is a few hundred bytes. */
const MAX_DOCUMENT_BYTES = 64 * 1024;

async function boundedText(res: Response): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_DOCUMENT_BYTES) {
      await reader.cancel();
      throw new InstanceMetadataError(`answer is larger than ${MAX_DOCUMENT_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Partition and account of the EC2 instance this runs on, from its identity
 * document (IMDSv2: a session token first, then the document). Fails within
 * `timeoutMs`, naming the endpoint and what went wrong.
 */
export async function compositionFromInstanceMetadata(endpoint: string, timeoutMs: number): Promise<RoleArnComposition> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const tokenRes = await fetch(`${endpoint}/latest/api/token`, {
      method: 'PUT',
      headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '60' },
      signal,
    });
    if (!tokenRes.ok) throw new InstanceMetadataError(`session token: HTTP ${tokenRes.status}`);
    const token = (await boundedText(tokenRes)).trim();
    const docRes = await fetch(`${endpoint}/latest/dynamic/instance-identity/document`, {
      headers: { 'X-aws-ec2-metadata-token': token },
      signal,
    });
    if (!docRes.ok) throw new InstanceMetadataError(`identity document: HTTP ${docRes.status}`);
    let doc: unknown;
    try {
      doc = JSON.parse(await boundedText(docRes));
    } catch (err) {
      if (err instanceof InstanceMetadataError) throw err;
      throw new InstanceMetadataError('identity document is not JSON');
    }
    const { accountId, region } = (doc ?? {}) as { accountId?: unknown; region?: unknown };
    if (typeof accountId !== 'string' || !ACCOUNT_ID.test(accountId)) throw new InstanceMetadataError('identity document has no 12-digit accountId');
    if (typeof region !== 'string' || region === '') throw new InstanceMetadataError('identity document has no region');
    return { partition: partitionOfRegion(region), accountId };
  } catch (err) {
    const reason =
      err instanceof InstanceMetadataError
        ? err.message
        : signal.aborted
          ? `no answer within ${timeoutMs} ms`
          : ((err as Error & { cause?: Error }).cause?.message ?? (err as Error).message);
    throw new InstanceMetadataError(`instance metadata at ${endpoint}: ${reason}`);
  }
}
