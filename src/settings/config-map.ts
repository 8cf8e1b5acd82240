// ConfigMap mode: the reference webhook's `pod-identity-webhook` ConfigMap maps
// "namespace/name" (or "*/name" for any namespace) to a role.
import { MAX_ROLE_ARN_LENGTH } from '../config.js';
import { clampTokenExpiration } from './service-account.js';

export interface ConfigMapEntry {
  roleArn: string;
  audience?: string;
  regionalSts?: boolean;
  tokenExpiration?: number;
}

/** Keyed "namespace/name" or "*\/name". */
export type ConfigMapIdentities = ReadonlyMap<string, ConfigMapEntry>;

export const EMPTY_CONFIG_MAP: ConfigMapIdentities = new Map();

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const FIELDS = ['RoleARN', 'Audience', 'UseRegionalSTS', 'TokenExpiration'] as const;
type Field = (typeof FIELDS)[number];
const FIELD_BY_FOLDED = new Map<string, Field>(FIELDS.map((f) => [f.toLowerCase(), f]));

/**
 * Go's encoding/json matches an object key to a struct field ignoring case
 * (Unicode simple case folding). The field names are ASCII, and besides ASCII
 * letters only two characters fold onto them: the long s (U+017F, to s) and
 * the Kelvin sign (U+212A, which toLowerCase already maps to k).
 */
function fieldOf(key: string): Field | undefined {
  return FIELD_BY_FOLDED.get(key.replace(/\u017f/g, 's').toLowerCase());
}

/** Number.isSafeInteger, which is false for anything but a number, as a type guard. */
function isWholeNumber(v: unknown): v is number {
  return Number.isSafeInteger(v);
}

const KEY_MARK = '\u0000';

/**
 * JSON text whose object keys each end in KEY_MARK and their position, so that
 * JSON.parse keeps every key, duplicates included, in document order (Go's
 * decoder sees each one; JSON.parse would keep only the last value of an exact
 * duplicate, at the first one's place). Every string literal is one match, so
 * a key is a string followed by a colon and nothing else is touched.
 */
function keysInOrder(json: string): string {
  let n = 0;
  return json.replace(/"([^"\\]*(?:\\.[^"\\]*)*)"(\s*:)?/g, (literal: string, body: string, colon: string | undefined) =>
    // Stryker disable next-line UpdateOperator: the marks only need to be distinct, and counting down keeps them distinct
    colon === undefined ? literal : `"${body}\\u0000${n++}"${colon}`);
}

function unmarked(key: string): string {
  const at = key.lastIndexOf(KEY_MARK);
  // Stryker disable next-line ConditionalExpression: unreachable guard: keysInOrder marks every key of the text, so at is never negative
  return at < 0 ? key : key.slice(0, at);
}

/**
 * An entry's fields as Go decodes them: every key that matches a field is
 * assigned in document order, so the last one wins; null leaves the field as
 * it was; unknown keys are ignored.
 */
function goFields(raw: Record<string, unknown>): Partial<Record<Field, unknown>> {
  const out: Partial<Record<Field, unknown>> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (value === null) continue;
    const field = fieldOf(unmarked(key));
    // Stryker disable next-line ConditionalExpression: an unknown key would be stored under "undefined", which no caller reads
    if (field !== undefined) out[field] = value;
  }
  return out;
}

/**
 * Parses `data.config` of the ConfigMap. Throws an Error naming the first
 * problem; callers keep their last good configuration when it throws.
 */
export function parseConfigMapConfig(text: string | undefined): Map<string, ConfigMapEntry> {
  const entries = new Map<string, ConfigMapEntry>();
  if (text === undefined || text.trim() === '') return entries;
  let doc: unknown;
  try {
    JSON.parse(text); // errors point into the text as written
    doc = JSON.parse(keysInOrder(text));
  } catch (err) {
    throw new Error(`data.config is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isRecord(doc)) throw new Error('data.config must be a JSON object keyed "namespace/name"');
  for (const [marked, raw] of Object.entries(doc)) {
    const key = unmarked(marked);
    const parts = key.split('/');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new Error(`data.config key "${key}" must be "namespace/name" or "*/name"`);
    }
    if (!isRecord(raw)) throw new Error(`data.config["${key}"] must be an object`);
    const { RoleARN, Audience, UseRegionalSTS, TokenExpiration } = goFields(raw);
    if (RoleARN !== undefined && typeof RoleARN !== 'string') throw new Error(`data.config["${key}"].RoleARN must be a string`);
    if (Audience !== undefined && typeof Audience !== 'string') throw new Error(`data.config["${key}"].Audience must be a string`);
    if (UseRegionalSTS !== undefined && typeof UseRegionalSTS !== 'boolean') {
      throw new Error(`data.config["${key}"].UseRegionalSTS must be true or false`);
    }
    if (TokenExpiration !== undefined && !isWholeNumber(TokenExpiration)) {
      throw new Error(`data.config["${key}"].TokenExpiration must be a whole number of seconds`);
    }
    const roleArn = (RoleARN ?? '').trim();
    if (roleArn.length > MAX_ROLE_ARN_LENGTH) {
      throw new Error(`data.config["${key}"].RoleARN is ${roleArn.length} characters long; STS accepts role ARNs of at most ${MAX_ROLE_ARN_LENGTH}`);
    }
    const entry: ConfigMapEntry = { roleArn };
    // Empty strings and 0 mean "use the default", as in the reference webhook.
    if (Audience) entry.audience = Audience;
    if (UseRegionalSTS !== undefined) entry.regionalSts = UseRegionalSTS;
    if (TokenExpiration) entry.tokenExpiration = clampTokenExpiration(TokenExpiration);
    entries.set(key, entry);
  }
  return entries;
}

/** An exact "namespace/name" key beats "*\/name". */
export function lookupConfigMap(
  identities: ConfigMapIdentities | undefined,
  namespace: string,
  name: string,
): ConfigMapEntry | undefined {
  if (!identities) return undefined;
  // Stryker disable next-line ConditionalExpression: an empty map answers undefined to both gets; the test only spares building the keys
  if (identities.size === 0) return undefined;
  return identities.get(`${namespace}/${name}`) ?? identities.get(`*/${name}`);
}
