// Types for scripts/check-coverage.mjs (a plain Node script, so that it runs without a build).
export type Metric = 'lines' | 'branches';
export interface Count {
  covered: number;
  total: number;
  pct: number;
}
export type Groups = Record<string, Record<Metric, Count>>;
export type Thresholds = Record<string, Partial<Record<Metric, number>>>;
/** istanbul's json-summary: absolute file paths (and "total") to their counts. */
export type Summary = Record<string, Record<Metric, { covered: number; total: number }>>;

export const METRICS: readonly Metric[];
export const SUMMARY: string;
export const THRESHOLDS: string;
export function groupOf(file: string): string;
export function aggregate(summary: Summary, root: string): Groups;
export function verdict(groups: Groups, thresholds: Thresholds): string[];
export function raised(groups: Groups, thresholds: Thresholds): Thresholds;
export function table(groups: Groups, thresholds: Thresholds): string;
