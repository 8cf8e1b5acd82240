// --compose-role-arn: a role-arn annotation that is only a role name or path
// (`my-role`, `team/my-role`) becomes `arn:<partition>:iam::<account>:role/<it>`.
// The partition and account come from flags, or else from EC2 instance metadata.

/** What a role name is completed with. */
export interface RoleArnComposition {
  partition: string;
  accountId: string;
}

/** A role name, or a path of names: IAM's allowed characters, no empty segment. */
const ROLE_NAME_OR_PATH = /^[\w+=,.@-]+(\/[\w+=,.@-]+)*$/;

/** The annotation value, completed to a full ARN when it is a bare role name or path. */
export function composeRoleArn(value: string, composition: RoleArnComposition | undefined): string {
  // Stryker disable next-line MethodExpression: a value starting (or ending) with "arn:" contains ':', which ROLE_NAME_OR_PATH never matches, so it is returned unchanged either way
  if (!composition || value.startsWith('arn:') || !ROLE_NAME_OR_PATH.test(value)) return value;
  return `arn:${composition.partition}:iam::${composition.accountId}:role/${value}`;
}

/** The AWS partition of a region, by its prefix (as the reference derives it). */
export function partitionOfRegion(region: string): string {
  if (region.startsWith('cn-')) return 'aws-cn';
  if (region.startsWith('us-gov-')) return 'aws-us-gov';
  if (region.startsWith('us-isob-')) return 'aws-iso-b';
  if (region.startsWith('us-iso-')) return 'aws-iso';
  return 'aws';
}

export const ACCOUNT_ID = /^\d{12}$/;

/** The partition names IAM ARNs use. */
export const PARTITION = /^aws(-[a-z]+)*$/;
