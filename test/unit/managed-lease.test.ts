import t from 'tap';
import { leaseDecision, leaseSpecFor, microTime } from '../../src/certificates/lease.js';

const now = new Date('2026-01-01T00:00:20.000Z');

t.test('lease decisions', async (t) => {
  t.equal(leaseDecision(now, undefined, 'me'), 'acquire', 'empty spec: {}');
  t.equal(leaseDecision(now, {}, 'me'), 'acquire');
  t.equal(leaseDecision(now, { holderIdentity: 'me', renewTime: '2026-01-01T00:00:00.000000Z', leaseDurationSeconds: 15 }, 'me'), 'renew');
  const other = { holderIdentity: 'other', leaseDurationSeconds: 15 };
  t.equal(leaseDecision(now, { ...other, renewTime: '2026-01-01T00:00:10.000000Z' }, 'me'), 'follow', 'held and fresh');
  t.equal(leaseDecision(now, { ...other, renewTime: '2026-01-01T00:00:05.000000Z' }, 'me'), 'acquire', 'expired at exactly 15 s');
  t.equal(leaseDecision(now, { ...other, renewTime: 'nonsense' }, 'me'), 'acquire', 'unreadable renewTime');
});

t.test('lease specs', async (t) => {
  t.equal(microTime(now), '2026-01-01T00:00:20.000000Z');
  const taken = leaseSpecFor('acquire', now, { holderIdentity: 'other', leaseTransitions: 2 }, 'me', 15);
  t.same(taken, { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 3 });
  const first = leaseSpecFor('acquire', now, {}, 'me', 15);
  t.equal(first.leaseTransitions, 0);
  const renewed = leaseSpecFor('renew', now, taken, 'me', 15);
  t.equal(renewed.acquireTime, taken.acquireTime, 'acquireTime kept');
  t.equal(renewed.leaseTransitions, 3);
});
