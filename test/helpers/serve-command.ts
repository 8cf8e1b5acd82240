// The exact argv that starts the webhook server, before any flags. The
// Dockerfile's ENTRYPOINT (+ CMD) must equal it (test/unit/dockerfile.test.ts),
// and the end-to-end suite starts the server with it, so both run the same thing.
export const SERVE_COMMAND = ['node', 'dist/cli.js', 'serve'] as const;
