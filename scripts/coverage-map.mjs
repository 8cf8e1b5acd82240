// tap's coverage map: which source files a test file's coverage counts for.
// Unit and integration tests measure src/ (with the CLI processes they spawn,
// whose dist/ code maps back to src/). Not measured at all (null): the
// end-to-end tests, so neither they nor the webhook and control plane they start
// run under V8's coverage profiler, the memory test, whose heap limits must
// measure the webhook and not the profiler, and the fuzz test, whose thousands
// of requests the profiler would only slow down. Leaving those two out lowers
// no directory's coverage by a whole point.
const UNMEASURED = new Set(['test/integration/admission-fuzz.test.ts', 'test/integration/memory.test.ts']);

export default function coverageMap(testFile) {
  return testFile.startsWith('test/e2e/') || UNMEASURED.has(testFile) ? null : 'src/**/*.ts';
}
