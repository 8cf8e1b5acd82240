// PEM text, the one place that finds its blocks: certificates, keys and
// bundles all come through here, so "what counts as a block" is decided once.
import { X509Certificate } from 'node:crypto';

export interface PemBlock {
  /** The label between BEGIN and END, e.g. "CERTIFICATE", "PUBLIC KEY". */
  label: string;
  /** The whole block, BEGIN and END lines included. */
  text: string;
}

/** Every well-formed block (matching BEGIN and END labels), in order; text around them is ignored. */
export function pemBlocks(pemText: string): PemBlock[] {
  return [...pemText.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)].map((m) => ({ label: m[1] as string, text: m[0] }));
}

/** Every certificate of a PEM bundle, parsed; throws on a CERTIFICATE block that is not one. */
export function pemCertificates(pemText: string): X509Certificate[] {
  return pemBlocks(pemText)
    .filter((b) => b.label === 'CERTIFICATE')
    .map((b) => new X509Certificate(b.text));
}

/** The first certificate of a PEM text (a chain starts with the leaf), or undefined when there is none. */
export function firstPemCertificate(pemText: string): X509Certificate | undefined {
  const block = pemBlocks(pemText).find((b) => b.label === 'CERTIFICATE');
  return block ? new X509Certificate(block.text) : undefined;
}
