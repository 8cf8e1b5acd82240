// The patch as JSON, written directly: the same few values (the identity env
// vars, the mount) recur in every container, so each is serialised once per
// pod instead of once per container. Output is byte-identical to
// JSON.stringify(patch).
import type { PatchOperation } from './patch.js';

export function patchJson(ops: readonly PatchOperation[]): string {
  const done = new Map<unknown, string>();
  const json = (value: unknown): string => {
    // Both conditions only decide what is cached; every value serialises the same either way (the property test compares with JSON.stringify).
    // Stryker disable next-line ConditionalExpression,LogicalOperator,EqualityOperator: a cache decision, not output
    if (typeof value !== 'object' || value === null) return JSON.stringify(value);
    let text = done.get(value);
    // Stryker disable next-line ConditionalExpression: a cache decision, not output
    if (text === undefined) {
      text = Array.isArray(value) ? `[${value.map(json).join(',')}]` : JSON.stringify(value);
      done.set(value, text);
    }
    return text;
  };
  let out = '[';
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as PatchOperation;
    out += `${i > 0 ? ',' : ''}{"op":"add","path":${JSON.stringify(op.path)},"value":${json(op.value)}}`;
  }
  return `${out}]`;
}
