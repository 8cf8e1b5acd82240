// Large request bodies (over SMALL_BODY_BYTES) are parsed and decoded in one
// worker thread, one at a time, with a heap of its own capped at
// DECODER_HEAP_MIB: the main thread only copies their bytes, and gets back the
// small decoded review. A legitimate large pod costs a thread hop; megabytes of
// hostile JSON cost neither the main heap nor the main event loop.
import { Worker } from 'node:worker_threads';
import type { DecodedReview } from './admission.js';
import { reholdYoungGeneration } from './heap.js';

export interface DecodeJob {
  id: number;
  body: Uint8Array;
}

export type DecodeAnswer =
  | { id: number; review: DecodedReview; invalidJson?: undefined; badReview?: undefined }
  | { id: number; invalidJson: string; review?: undefined; badReview?: undefined }
  | { id: number; badReview: string; review?: undefined; invalidJson?: undefined };

/** What became of a body: decoded, or why not (`failed`: the worker died, e.g. out of memory). */
export type Decoded = DecodeAnswer | { failed: string };

/** The worker's old generation: a legitimate pod (at most 1.5 MiB, etcd's limit) fits many times over. */
export const DECODER_HEAP_MIB = 64;

export interface BodyDecoder {
  decode(body: Buffer): Promise<Decoded>;
  close(): Promise<void>;
}

// Run from source (the tests), this module is .ts and so is its worker; built,
// both sit in dist/lib/ (scripts/build.mjs).
const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './body-decoder-worker.ts' : './body-decoder-worker.js', import.meta.url);

interface Running {
  worker: Worker;
  pending: Map<number, (d: Decoded) => void>;
}

export function bodyDecoder(annotationPrefix: string): BodyDecoder {
  let running: Running | undefined;
  let nextId = 0;
  // Started on the first large body; a worker that dies (out of memory) fails
  // the bodies it held, and the next large body starts a new one.
  const start = (): Running => {
    const worker = new Worker(workerUrl, {
      workerData: { annotationPrefix },
      resourceLimits: { maxOldGenerationSizeMb: DECODER_HEAP_MIB, maxYoungGenerationSizeMb: 4 },
      stdout: false,
      stderr: false,
    });
    // Starting an isolate resets a V8 flag the main thread relies on (heap.ts).
    worker.once('online', reholdYoungGeneration);
    const self: Running = { worker, pending: new Map() };
    worker.on('message', (a: DecodeAnswer) => {
      const resolve = self.pending.get(a.id);
      self.pending.delete(a.id);
      // An idle worker does not keep the process alive; one with work does.
      if (self.pending.size === 0) worker.unref();
      resolve?.(a);
    });
    const fail = (err?: Error): void => {
      if (running === self) running = undefined;
      const reason = err?.message ?? 'the decoder stopped';
      for (const resolve of self.pending.values()) resolve({ failed: reason });
      self.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', () => fail());
    worker.unref();
    return self;
  };
  return {
    decode(body) {
      const r = (running ??= start());
      const id = nextId++;
      // Shared memory (the body budget's) is read by the worker in place; a
      // body's own ArrayBuffer moves to the worker without a copy when it can.
      const shared = body.buffer instanceof SharedArrayBuffer;
      const bytes = shared || (body.byteOffset === 0 && body.buffer.byteLength === body.length) ? body : new Uint8Array(body);
      return new Promise((resolve) => {
        r.pending.set(id, resolve);
        r.worker.ref();
        r.worker.postMessage({ id, body: bytes } satisfies DecodeJob, shared ? [] : [bytes.buffer as ArrayBuffer]);
      });
    },
    async close() {
      const r = running;
      running = undefined;
      if (r) await r.worker.terminate();
    },
  };
}
