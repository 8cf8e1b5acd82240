import t from 'tap';
import { decodeSecret, inspectMaterial } from '../../src/certificates/secret.js';
import { SECRET_ANNOTATIONS, nextStep } from '../../src/certificates/rotation.js';
import { createCA, createServingCertificate } from '../../src/tls/certificates.js';

const svc = { name: 'piw', namespace: 'ns' };
const names = ['piw', 'piw.ns', 'piw.ns.svc', 'piw.ns.svc.cluster.local'];
const HOUR = 3_600_000;
const b64 = (s: string) => Buffer.from(s).toString('base64');
const policy = { renewFraction: 2 / 3, graceMs: 60_000 };

t.test('a complete Secret reads as valid and fresh', async (t) => {
  const now = new Date();
  const ca = await createCA({ keyType: 'ec', notAfter: new Date(now.getTime() + 10 * HOUR) });
  const tls = await createServingCertificate(ca, { keyType: 'ec', dnsNames: names, ipAddresses: [], notAfter: new Date(now.getTime() + 5 * HOUR) });
  const secret = { data: { 'ca.crt': b64(ca.cert), 'ca.key': b64(ca.key), 'tls.crt': b64(tls.cert), 'tls.key': b64(tls.key) } };
  const s = inspectMaterial(decodeSecret(secret), {}, svc, true);
  t.ok(s.ca);
  t.equal(s.serving?.signedByCa, true);
  t.equal(s.serving?.namesOk, true);
  t.equal(nextStep(now, s, policy).step, 'wait');

  const otherNames = inspectMaterial(decodeSecret(secret), {}, { name: 'other', namespace: 'ns' }, true);
  t.equal(otherNames.serving?.namesOk, false, 'a renamed Service needs a new certificate');
  t.equal(nextStep(now, otherNames, policy).step, 'issue-serving');

  const swapped = { data: { ...secret.data, 'ca.key': b64(tls.key) } };
  t.equal(inspectMaterial(decodeSecret(swapped), {}, svc, true).ca, undefined, 'a CA key that does not match is no CA');

  const prev = await createCA({ keyType: 'ec', notAfter: new Date(now.getTime() + 10 * HOUR), commonName: 'old' });
  const rotating = inspectMaterial(
    decodeSecret({ data: { ...secret.data, 'ca-previous.crt': b64(prev.cert) } }),
    { [SECRET_ANNOTATIONS.caRotatedAt]: now.toISOString(), [SECRET_ANNOTATIONS.servingSwitchedAt]: 'garbage' },
    svc,
    true,
  );
  t.ok(rotating.previousCa);
  t.same(rotating.caRotatedAt, now);
  t.equal(rotating.servingSwitchedAt, undefined, 'an unparseable date is absent');
});

t.test('an empty or hostile Secret reads as nothing usable', async (t) => {
  t.same(inspectMaterial(decodeSecret({}), undefined, svc, false), { bundleWritten: false });
  const junk = { data: { 'ca.crt': b64('not a pem'), 'ca.key': b64('x'), 'tls.crt': 'AAAA', 'tls.key': '!!' } };
  const s = inspectMaterial(decodeSecret(junk), undefined, svc, false);
  t.same(s, { bundleWritten: false });
  t.equal(nextStep(new Date(), s, policy).step, 'create-ca');
  const huge = { data: { 'ca.crt': 'A'.repeat(200_000) } };
  t.same(decodeSecret(huge), {}, 'oversized values are not decoded');
});

t.test('extra names: a certificate lacking an IP address or DNS name the webhook is called by is reissued', async (t) => {
  const now = new Date();
  const ca = await createCA({ keyType: 'ec', notAfter: new Date(now.getTime() + 10 * HOUR) });
  const issue = async (ipAddresses: string[], dns: string[] = []) => {
    const tls = await createServingCertificate(ca, { keyType: 'ec', dnsNames: [...names, ...dns], ipAddresses, notAfter: new Date(now.getTime() + 5 * HOUR) });
    return decodeSecret({ data: { 'ca.crt': b64(ca.cert), 'ca.key': b64(ca.key), 'tls.crt': b64(tls.cert), 'tls.key': b64(tls.key) } });
  };
  const withIp = { ...svc, ipAddresses: ['127.0.0.1'] };
  t.equal(inspectMaterial(await issue([]), {}, withIp, true).serving?.namesOk, false, 'no IP address');
  t.equal(inspectMaterial(await issue(['127.0.0.1']), {}, withIp, true).serving?.namesOk, true, 'with it');
  t.equal(inspectMaterial(await issue(['::1']), {}, { ...svc, ipAddresses: ['0:0:0:0:0:0:0:1'] }, true).serving?.namesOk, true, 'IPv6 compared in one spelling');
  const withDns = { ...svc, extraDnsNames: ['webhook.example.com'] };
  t.equal(inspectMaterial(await issue([]), {}, withDns, true).serving?.namesOk, false, 'no extra DNS name');
  t.equal(inspectMaterial(await issue([], ['Webhook.Example.com']), {}, withDns, true).serving?.namesOk, true, 'DNS names compared without case');
});
