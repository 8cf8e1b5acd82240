import t from 'tap';
import {
  bundleWritten,
  composeBundle,
  nextStep,
  renewAt,
  servingNotAfter,
  type RotationState,
} from '../../src/certificates/rotation.js';
import { createCA } from '../../src/tls/certificates.js';

const S = 1000;
const T0 = new Date('2026-01-01T00:00:00Z');
const at = (s: number) => new Date(T0.getTime() + s * S);
const policy = { renewFraction: 2 / 3, graceMs: 10 * S };
// CA valid 0..600 s, serving 0..300 s: CA due at 400 s, serving due at 200 s.
const fresh = (): RotationState => ({
  ca: { notBefore: at(0), notAfter: at(600) },
  serving: { notBefore: at(0), notAfter: at(300), signedByCa: true, signedByPreviousCa: false, namesOk: true },
  bundleWritten: true,
});

t.test('fresh install: no CA -> create-ca; expired CA -> create-ca', async (t) => {
  t.equal(nextStep(at(0), { bundleWritten: false }, policy).step, 'create-ca');
  t.equal(nextStep(at(700), fresh(), policy).step, 'create-ca');
});

t.test('the bundle is written before any serving certificate is issued', async (t) => {
  const s = { ...fresh(), bundleWritten: false };
  delete s.serving;
  t.equal(nextStep(at(1), s, policy).step, 'write-bundle');
  t.equal(nextStep(at(1), { ...s, bundleWritten: true }, policy).step, 'issue-serving');
});

t.test('fresh certificates: wait until the earliest renewal', async (t) => {
  const step = nextStep(at(10), fresh(), policy);
  t.equal(step.step, 'wait');
  t.same(step.step === 'wait' && step.until, at(200));
});

t.test('serving renewal at 2/3 of its lifetime, under the same CA', async (t) => {
  t.equal(nextStep(at(199), fresh(), policy).step, 'wait');
  t.equal(nextStep(at(200), fresh(), policy).step, 'issue-serving');
});

t.test('a serving certificate missing a name or from another CA is reissued', async (t) => {
  const s = fresh();
  s.serving = { ...s.serving!, namesOk: false };
  t.equal(nextStep(at(1), s, policy).step, 'issue-serving');
  s.serving = { ...s.serving, namesOk: true, signedByCa: false };
  t.equal(nextStep(at(1), s, policy).step, 'issue-serving');
});

t.test('CA rotation: rotate, then switch after grace, then drop after grace', async (t) => {
  const s = fresh();
  s.serving = { notBefore: at(350), notAfter: at(650), signedByCa: true, signedByPreviousCa: false, namesOk: true };
  t.equal(nextStep(at(400), s, policy).step, 'rotate-ca');
  // After rotate-ca: new CA, old one kept, serving still under the old CA.
  const rotated: RotationState = {
    ca: { notBefore: at(400), notAfter: at(1000) },
    previousCa: { notBefore: at(0), notAfter: at(600) },
    serving: { ...s.serving, signedByCa: false, signedByPreviousCa: true },
    caRotatedAt: at(400),
    bundleWritten: false,
  };
  t.equal(nextStep(at(400), rotated, policy).step, 'write-bundle', 'bundle (new + old) first');
  rotated.bundleWritten = true;
  const waiting = nextStep(at(405), rotated, policy);
  t.equal(waiting.step, 'wait', 'no certificate of the new CA before the grace period');
  t.same(waiting.step === 'wait' && waiting.until, at(410));
  t.equal(nextStep(at(410), rotated, policy).step, 'issue-serving');
  // After issue-serving: serving under the new CA, previous CA still in the bundle.
  const switched: RotationState = {
    ...rotated,
    serving: { notBefore: at(410), notAfter: at(710), signedByCa: true, signedByPreviousCa: false, namesOk: true },
    servingSwitchedAt: at(410),
  };
  t.equal(nextStep(at(415), switched, policy).step, 'wait', 'old CA kept while replicas reload');
  t.equal(nextStep(at(420), switched, policy).step, 'drop-previous-ca');
});

t.test('an expired previous CA is dropped at once', async (t) => {
  const s: RotationState = { ...fresh(), ca: { notBefore: at(0), notAfter: at(2000) }, previousCa: { notBefore: at(-600), notAfter: at(5) } };
  t.equal(nextStep(at(6), s, policy).step, 'drop-previous-ca');
});

t.test('renewAt and servingNotAfter', async (t) => {
  t.same(renewAt({ notBefore: at(0), notAfter: at(300) }, 2 / 3), at(200));
  t.same(servingNotAfter(at(0), 300 * S, { notBefore: at(0), notAfter: at(100) }), at(100), 'capped at the CA end');
  t.same(servingNotAfter(at(0), 30 * S, { notBefore: at(0), notAfter: at(100) }), at(30));
});

t.test('bundle composition: new CA first, then the old one, no duplicates', async (t) => {
  const a = await createCA({ keyType: 'ec', notAfter: at(10_000_000), commonName: 'a' });
  const b = await createCA({ keyType: 'ec', notAfter: at(10_000_000), commonName: 'b' });
  const bundle = composeBundle(b.cert, a.cert);
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
  t.equal(blocks.length, 2);
  t.ok(bundle.indexOf(b.cert.trim()) < bundle.indexOf(a.cert.trim()), 'new CA first');
  t.equal(composeBundle(a.cert, a.cert), composeBundle(a.cert), 'same CA once');
  t.equal(composeBundle(a.cert).match(/BEGIN/g)?.length, 1);
  const enc = Buffer.from(bundle).toString('base64');
  t.ok(bundleWritten([{ clientConfig: { caBundle: enc } }, { clientConfig: { caBundle: enc } }], bundle));
  t.notOk(bundleWritten([{ clientConfig: { caBundle: enc } }, { clientConfig: {} }], bundle), 'one webhook cleared');
  t.notOk(bundleWritten([], bundle), 'no webhooks');
});
