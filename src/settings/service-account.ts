// A ServiceAccount reduced to what the engine needs, parsed once when it is
// read (from the cache or a file), so admission never re-parses annotations.
import { ANNOTATION, MAX_ROLE_ARN_LENGTH, MIN_TOKEN_EXPIRATION, ROLE_SESSION_NAME_POD_NAME, type RoleSessionNameMode } from '../config.js';
import { isWellFormedRoleArn, parseGoBool, parseGoInt } from './values.js';
import { quote } from './warnings.js';
import { composeRoleArn, type RoleArnComposition } from './role-arn.js';

export interface ServiceAccountSettings {
  roleArn?: string;
  audience?: string;
  regionalSts?: boolean;
  tokenExpiration?: number;
  /** role-session-name (opt-in, not in the reference). */
  roleSessionName?: RoleSessionNameMode;
  /** What was ignored or looks wrong in the annotations, one sentence each. */
  warnings: readonly string[];
}

/** Shared by every ServiceAccount without annotations of ours: most of a large cluster. */
export const NO_SETTINGS: ServiceAccountSettings = Object.freeze({ warnings: Object.freeze([]) });

/** Clamp like the reference webhook: shorter than the minimum means the minimum. */
export function clampTokenExpiration(seconds: number): number {
  return Math.max(seconds, MIN_TOKEN_EXPIRATION);
}

/**
 * Parses a token-expiration annotation value. Invalid text is ignored (undefined),
 * values under the minimum are raised to it; both produce a warning.
 */
export function parseTokenExpirationAnnotation(
  key: string,
  text: string,
  warnings: string[],
): number | undefined {
  const n = parseGoInt(text);
  if (n === undefined) {
    warnings.push(`annotation ${key}=${quote(text)} is not a whole number of seconds; it is ignored`);
    return undefined;
  }
  if (n < MIN_TOKEN_EXPIRATION) {
    warnings.push(`annotation ${key}=${quote(text)} is below the minimum of ${MIN_TOKEN_EXPIRATION} seconds; ${MIN_TOKEN_EXPIRATION} is used`);
  }
  return clampTokenExpiration(n);
}

/** A role-session-name annotation (pod or ServiceAccount): `pod-name`, or a warning and undefined. */
export function parseRoleSessionName(key: string, text: string, warn: (w: string) => void): RoleSessionNameMode | undefined {
  if (text === ROLE_SESSION_NAME_POD_NAME) return ROLE_SESSION_NAME_POD_NAME;
  warn(`annotation ${key}=${quote(text)} is not "${ROLE_SESSION_NAME_POD_NAME}"; it is ignored`);
  return undefined;
}

export function parseServiceAccountAnnotations(
  annotations: Readonly<Record<string, string>> | undefined | null,
  prefix: string,
  /** --compose-role-arn: completes a bare role name or path. */
  composition?: RoleArnComposition,
): ServiceAccountSettings {
  if (typeof annotations !== 'object' || annotations === null) return NO_SETTINGS;
  const key = (suffix: string): string => `${prefix}/${suffix}`;
  const warnings: string[] = [];
  // Annotations may come from a file: only own string values count.
  const read = (suffix: string): string | undefined => {
    if (!Object.hasOwn(annotations, key(suffix))) return undefined;
    const v: unknown = annotations[key(suffix)];
    if (typeof v === 'string') return v;
    warnings.push(`annotation ${key(suffix)} is not a string; it is ignored`);
    return undefined;
  };
  const roleArn = read(ANNOTATION.roleArn);
  const audience = read(ANNOTATION.audience);
  const sts = read(ANNOTATION.stsRegionalEndpoints);
  const expiration = read(ANNOTATION.tokenExpiration);
  const session = read(ANNOTATION.roleSessionName);
  if (roleArn === undefined && audience === undefined && sts === undefined && expiration === undefined && session === undefined && warnings.length === 0) {
    return NO_SETTINGS;
  }

  const settings: ServiceAccountSettings = { warnings };
  if (roleArn !== undefined) {
    const arn = composeRoleArn(roleArn.trim(), composition);
    if (arn.length > MAX_ROLE_ARN_LENGTH) {
      warnings.push(
        `annotation ${key(ANNOTATION.roleArn)}=${quote(roleArn)} is ${arn.length} characters long; STS accepts role ARNs of at most ${MAX_ROLE_ARN_LENGTH}, so it is ignored`,
      );
    } else if (arn !== '') {
      if (!isWellFormedRoleArn(arn)) {
        warnings.push(
          `annotation ${key(ANNOTATION.roleArn)}=${quote(roleArn)} is not a role ARN of the form arn:<partition>:iam::<12-digit account>:role/<name>`,
        );
      }
      settings.roleArn = arn;
    }
  }
  if (audience !== undefined) settings.audience = audience;
  if (sts !== undefined) {
    const value = parseGoBool(sts);
    if (value === undefined) {
      warnings.push(`annotation ${key(ANNOTATION.stsRegionalEndpoints)}=${quote(sts)} is not true or false; it is ignored`);
    } else {
      settings.regionalSts = value;
    }
  }
  if (expiration !== undefined) {
    const value = parseTokenExpirationAnnotation(key(ANNOTATION.tokenExpiration), expiration, warnings);
    if (value !== undefined) settings.tokenExpiration = value;
  }
  if (session !== undefined) {
    const mode = parseRoleSessionName(key(ANNOTATION.roleSessionName), session, (w) => warnings.push(w));
    if (mode) settings.roleSessionName = mode;
  }
  Object.freeze(warnings);
  return settings;
}
