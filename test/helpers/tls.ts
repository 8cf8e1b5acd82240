// Throwaway CA and serving certificates for tests, made with openssl.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  caCert: string;
  caKey: string;
  /** Issues a serving (or client) certificate for 127.0.0.1/localhost, written to dir/NAME.crt|key. */
  issue(name: string, opts?: { days?: number; client?: boolean; cn?: string }): { cert: string; key: string; certFile: string; keyFile: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'piw-pki-'));
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '3', '-subj', '/CN=test-ca', '-out', 'ca.crt'], dir);
  let serial = 1;
  return {
    dir,
    caCert: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    caKey: readFileSync(join(dir, 'ca.key'), 'utf8'),
    issue(name, opts = {}) {
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
      openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${opts.cn ?? name}`, '-out', `${name}.csr`], dir);
      const ext = opts.client
        ? 'extendedKeyUsage=clientAuth\n'
        : 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n';
      writeFileSync(join(dir, `${name}.ext`), ext);
      openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(serial++),
        '-days', String(opts.days ?? 2), '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir);
      const certFile = join(dir, `${name}.crt`);
      const keyFile = join(dir, `${name}.key`);
      return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile };
    },
  };
}
