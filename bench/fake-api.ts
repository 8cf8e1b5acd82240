// The bench's API server, in a process of its own so that its heap and GC do
// not disturb the load generator. Prints the kubeconfig path, then waits.
import { startFakeApiServer } from '../test/helpers/fake-apiserver.js';

const count = Number(process.argv[2] ?? 0);
const fake = await startFakeApiServer();
for (let i = 0; i < count; i++) {
  const annotated = i % 10 === 0;
  fake.serviceAccount(`ns-${i % 500}`, `sa-${i}`, annotated ? { 'eks.amazonaws.com/role-arn': `arn:aws:iam::111122223333:role/r${i}` } : {});
}
fake.serviceAccount('shop', 'checkout', { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::111122223333:role/checkout' });
process.stdout.write(`${fake.kubeconfigPath}\n`);
process.on('SIGTERM', () => void fake.close().then(() => process.exit(0)));
