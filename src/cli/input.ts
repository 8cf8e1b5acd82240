// Reading the files a user points the CLI at: YAML or JSON, one object, a
// multi-document stream or a `kind: List` (kubectl get -o yaml), with errors
// that name the file and the problem.
import { readFileSync } from 'node:fs';
import { type Document, parseAllDocuments, stringify } from 'yaml';
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

function yamlError(flag: string, path: string, doc: Document.Parsed): UsageError {
  const first = doc.errors[0]!;
  const line = first.linePos?.[0];
  const where = line ? ` (line ${line.line}, column ${line.col})` : '';
  return new UsageError(`${flag} ${path}: invalid YAML${where}: ${first.message.split('\n')[0]}`);
}

/** Every YAML (or JSON, which is YAML) document of a file; empty documents are left out. */
export function parseDocuments(flag: string, path: string, text: string): unknown[] {
  const docs = parseAllDocuments(text, { prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [docs];
  const real = list.filter((d) => d.contents !== null || d.errors.length > 0);
  if (real.length === 0) throw new UsageError(`${flag} ${path}: the file is empty`);
  const broken = real.find((d) => d.errors.length > 0);
  if (broken) throw yamlError(flag, path, broken);
  return real.map((d) => d.toJS({ maxAliasCount: 100 }) as unknown);
}

/** One YAML (or JSON, which is YAML) document. */
export function parseDocument(flag: string, path: string, text: string): unknown {
  const docs = parseDocuments(flag, path, text);
  if (docs.length > 1) throw new UsageError(`${flag} ${path}: holds ${docs.length} documents; expected one`);
  return docs[0];
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  [key: string]: unknown;
}

function checkAnnotations(flag: string, path: string, obj: KubeObject, where = ''): void {
  const annotations = obj.metadata?.annotations;
  if (annotations !== undefined && annotations !== null) {
    if (typeof annotations !== 'object' || Object.values(annotations).some((v) => typeof v !== 'string')) {
      throw new UsageError(`${flag} ${path}${where}: metadata.annotations must map names to strings (quote values such as "true" or "3600")`);
    }
  }
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
  checkAnnotations(flag, path, obj);
  return obj;
}

export type Format = 'json' | 'yaml';

/** Where an object sits in its stream: document `doc`, and `item` when that document is a List. */
export interface Located {
  object: KubeObject;
  doc: number;
  item?: number;
  /** JSON pointer of the object inside its document: "" or "/items/3". */
  pointer: string;
  /** "document 2", "document 1, item 3": for messages; "" for a file of one object. */
  where: string;
}

/** A file of Kubernetes objects as written: its format and documents, Lists kept as Lists. */
export interface ObjectStream {
  flag: string;
  path: string;
  format: Format;
  documents: KubeObject[];
  objects: Located[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `kind: List` (kubectl get -o yaml) and typed lists (PodList, ...) alike. */
export function isList(obj: KubeObject): boolean {
  return typeof obj.kind === 'string' && obj.kind.endsWith('List') && Array.isArray(obj['items']);
}

/** Reads YAML documents and Lists of Kubernetes objects; every object must have a kind. */
export function readObjectStream(flag: string, path: string): ObjectStream {
  const text = readText(flag, path);
  const format: Format = /^\s*[{[]/.test(text) ? 'json' : 'yaml';
  const docs = parseDocuments(flag, path, text);
  const objects: Located[] = [];
  const single = docs.length === 1;
  docs.forEach((doc, d) => {
    const at = single ? '' : ` (document ${d + 1})`;
    if (!isObject(doc)) throw new UsageError(`${flag} ${path}${at}: expected a Kubernetes object, not ${Array.isArray(doc) ? 'a list' : typeof doc}`);
    const obj = doc as KubeObject;
    if (isList(obj)) {
      (obj['items'] as unknown[]).forEach((item, i) => {
        const where = single ? ` (item ${i + 1})` : ` (document ${d + 1}, item ${i + 1})`;
        if (!isObject(item) || typeof item['kind'] !== 'string') throw new UsageError(`${flag} ${path}${where}: expected a Kubernetes object with a "kind"`);
        checkAnnotations(flag, path, item, where);
        objects.push({ object: item, doc: d, item: i, pointer: `/items/${i}`, where });
      });
      return;
    }
    if (typeof obj.kind !== 'string') throw new UsageError(`${flag} ${path}${at}: is an object without "kind"`);
    checkAnnotations(flag, path, obj, at);
    objects.push({ object: obj, doc: d, pointer: '', where: at });
  });
  return { flag, path, format, documents: docs as KubeObject[], objects };
}

/** YAML as kubectl prints it: no line folding. */
export function toYaml(value: unknown): string {
  return stringify(value, { lineWidth: 0, indentSeq: false }).trimEnd();
}

/**
 * Documents in a format: YAML documents separated by `---`; in JSON one
 * document as itself, several wrapped in a List (as kubectl prints them).
 */
export function renderDocuments(documents: unknown[], format: Format): string {
  if (format === 'yaml') return documents.map(toYaml).join('\n---\n');
  if (documents.length === 1) return JSON.stringify(documents[0], null, 2);
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: documents.flatMap((d) => (isObject(d) && isList(d as KubeObject) ? (d['items'] as unknown[]) : [d])) }, null, 2);
}
