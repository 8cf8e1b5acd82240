// tap's coverage map: which source files a test file's coverage counts for.
// Unit and integration tests measure src/; end-to-end tests are not measured at
// all (null), so neither they nor the webhook and control plane they start run
// under V8's coverage profiler: their timings and memory stay as in production.
export default function coverageMap(testFile) {
  return testFile.startsWith('test/e2e/') ? null : 'src/**/*.ts';
}
