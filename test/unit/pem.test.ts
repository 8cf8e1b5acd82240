import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { createCA, createServingCertificate, readCertificateInfo } from '../../src/tls/certificates.js';
import { firstPemCertificate, pemBlocks, pemCertificates } from '../../src/tls/pem.js';

t.test('pemBlocks: labels and texts in order, text around blocks ignored, mismatched END labels skipped', async (t) => {
  const pub = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const text = `subject=CN=x\n${pub}garbage\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END PUBLIC KEY-----\n-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n`;
  const blocks = pemBlocks(text);
  t.same(blocks.map((b) => b.label), ['PUBLIC KEY', 'EC PARAMETERS']);
  t.equal(blocks[0]?.text, pub.trimEnd());
  t.same(pemBlocks('no pem here'), []);
});

t.test('pemCertificates and firstPemCertificate read a chain leaf first, skipping other blocks', async (t) => {
  const notAfter = new Date(Date.now() + 86_400_000);
  const ca = await createCA({ keyType: 'ec', notAfter });
  const serving = await createServingCertificate(ca, { keyType: 'ec', dnsNames: ['a.example.com'], ipAddresses: [], notAfter });
  const bundle = `${serving.key}${serving.cert}${ca.cert}`;
  const certs = pemCertificates(bundle);
  t.equal(certs.length, 2);
  t.equal(certs[1]?.ca, true, 'the CA comes second');
  t.equal(firstPemCertificate(bundle)?.fingerprint256, certs[0]?.fingerprint256);
  t.equal(firstPemCertificate(serving.key), undefined, 'a key alone holds no certificate');
  t.throws(() => pemCertificates('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), 'a broken certificate block is an error, not skipped');
});

t.test('subjectAltName names are read from the extension itself, odd names and IPv6 included', async (t) => {
  const notAfter = new Date(Date.now() + 86_400_000);
  const ca = await createCA({ keyType: 'ec', notAfter });
  // A comma and a quote inside a name: a text rendering would have to be unquoted to read them back.
  const dnsNames = ['svc.ns.svc', 'odd, "name".example.com', '*.wild.example.com'];
  const serving = await createServingCertificate(ca, { keyType: 'ec', dnsNames, ipAddresses: ['10.0.0.1', '2001:db8::1'], notAfter });
  const info = readCertificateInfo(serving.cert);
  t.same(info.dnsNames, dnsNames);
  t.same(info.ipAddresses, ['10.0.0.1', '2001:db8::1']);
  t.equal(info.isCA, false);
  t.same(readCertificateInfo(ca.cert).dnsNames, [], 'a CA without SANs');
});
