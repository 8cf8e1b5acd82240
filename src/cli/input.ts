// Reading the files a user points the CLI at: one YAML or JSON document each,
// with errors that name the file and the problem.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { UsageError } from './flags.js';

export function readText(flag: string, path: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory' : e.code ?? e.message;
    throw new UsageError(`${flag} ${path}: cannot read: ${why}`);
  }
}

/** One YAML (or JSON, which is YAML) document. */
export function parseDocument(flag: string, path: string, text: string): unknown {
  const docs = parseAllDocuments(text, { prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [docs];
  const real = list.filter((d) => d.contents !== null || d.errors.length > 0);
  if (real.length === 0) throw new UsageError(`${flag} ${path}: the file is empty`);
  if (real.length > 1) throw new UsageError(`${flag} ${path}: holds ${real.length} documents; expected one`);
  const doc = real[0]!;
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const line = first.linePos?.[0];
    const where = line ? ` (line ${line.line}, column ${line.col})` : '';
    throw new UsageError(`${flag} ${path}: invalid YAML${where}: ${first.message.split('\n')[0]}`);
  }
  return doc.toJS({ maxAliasCount: 100 });
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  [key: string]: unknown;
}

/** Reads a file holding one Kubernetes object of the given kind. */
export function readKubeObject(flag: string, path: string, kind: string): KubeObject {
  const doc = parseDocument(flag, path, readText(flag, path));
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new UsageError(`${flag} ${path}: expected a ${kind} object`);
  }
  const obj = doc as KubeObject;
  if (obj.kind !== kind) {
    const got = typeof obj.kind === 'string' ? `a ${obj.kind}` : 'an object without "kind"';
    throw new UsageError(`${flag} ${path}: is ${got}, not a ${kind}`);
  }
  const annotations = obj.metadata?.annotations;
  if (annotations !== undefined && annotations !== null) {
    if (typeof annotations !== 'object' || Object.values(annotations).some((v) => typeof v !== 'string')) {
      throw new UsageError(`${flag} ${path}: metadata.annotations must map names to strings (quote values such as "true" or "3600")`);
    }
  }
  return obj;
}
