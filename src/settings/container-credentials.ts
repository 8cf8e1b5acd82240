// EKS Pod Identity: the identities file lists the ServiceAccounts whose pods get
// container credentials instead of a web identity.

export type ContainerCredentialsIdentities = ReadonlySet<string>;

export function containerCredentialsKey(namespace: string, serviceAccount: string): string {
  return `${namespace}/${serviceAccount}`;
}

/**
 * Parses `{"identities":[{"namespace":..,"serviceAccount":..}]}`. Throws an
 * Error naming the first problem.
 */
export function parseContainerCredentialsConfig(text: string): Set<string> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new Error('expected an object {"identities": [...]}');
  }
  const list = Object.hasOwn(doc, 'identities') ? (doc as { identities?: unknown }).identities : undefined;
  if (list === undefined || list === null) return new Set();
  if (!Array.isArray(list)) throw new Error('"identities" must be an array');
  const keys = new Set<string>();
  list.forEach((item: unknown, i) => {
    // Own properties only: a "__proto__" key is data, never a prototype. A
    // string, number or boolean item owns neither key (Object.hasOwn boxes it).
    const field = (key: string): unknown =>
      item !== null && Object.hasOwn(item as object, key) ? (item as Record<string, unknown>)[key] : undefined;
    const namespace = field('namespace');
    const serviceAccount = field('serviceAccount');
    if (typeof namespace !== 'string' || typeof serviceAccount !== 'string' || namespace === '' || serviceAccount === '') {
      throw new Error(`identities[${i}] must have non-empty string "namespace" and "serviceAccount"`);
    }
    keys.add(containerCredentialsKey(namespace, serviceAccount));
  });
  return keys;
}
