// Client-certificate chains for --client-ca tests: a root, intermediates and
// leaves with chosen extended key usages and validity periods, made with
// @peculiar/x509 on Node's WebCrypto.
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY = 86_400_000;
export const EKU = {
  clientAuth: x509.ExtendedKeyUsage.clientAuth,
  serverAuth: x509.ExtendedKeyUsage.serverAuth,
  any: '2.5.29.37.0',
} as const;

export interface Issued {
  cert: string;
  key: string;
  /** For signing further certificates. */
  keys: webcrypto.CryptoKeyPair;
  x509: x509.X509Certificate;
}

export interface IssueOptions {
  /** Extended key usages; undefined = no extension (any usage). */
  eku?: string[];
  /** Default: a CA for roots and intermediates, not for leaves. */
  ca?: boolean;
  notBefore?: Date;
  notAfter?: Date;
}

let serial = 1;

async function pemKey(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

function extensions(o: IssueOptions, ca: boolean): x509.Extension[] {
  const ext: x509.Extension[] = [new x509.BasicConstraintsExtension(ca, undefined, true)];
  ext.push(new x509.KeyUsagesExtension(ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature, true));
  if (o.eku) ext.push(new x509.ExtendedKeyUsageExtension(o.eku, false));
  return ext;
}

export async function root(name = 'client-root', o: IssueOptions = {}): Promise<Issued> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    name: `CN=${name}`,
    notBefore: o.notBefore ?? new Date(Date.now() - DAY),
    notAfter: o.notAfter ?? new Date(Date.now() + 2 * DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [...extensions(o, o.ca ?? true), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
  });
  return { cert: cert.toString('pem'), key: await pemKey(keys.privateKey), keys, x509: cert };
}

/** A certificate signed by `issuer`; a CA (an intermediate) when o.ca. */
export async function issue(issuer: Issued, name: string, o: IssueOptions = {}): Promise<Issued> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    subject: `CN=${name}`,
    issuer: issuer.x509.subject,
    notBefore: o.notBefore ?? new Date(Date.now() - DAY),
    notAfter: o.notAfter ?? new Date(Date.now() + DAY),
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      ...extensions(o, o.ca ?? false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await pemKey(keys.privateKey), keys, x509: cert };
}

export const daysFromNow = (days: number): Date => new Date(Date.now() + days * DAY);
