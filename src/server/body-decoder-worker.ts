// The worker thread of body-decoder.ts: parses a large request body and sends
// back only its decoded review. Its heap is small and its own, so megabytes of
// hostile JSON are collected here, and parsing them never blocks the event
// loop that answers the API server's ordinary reviews.
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { BadReviewError, decodeReview, withOwnAnnotations } from './admission.js';
import type { DecodeAnswer, DecodeJob } from './body-decoder.js';
import { fullCollection } from './heap.js';

const { annotationPrefix } = workerData as { annotationPrefix: string };
// Megabytes of JSON are somebody's attack far more often than a pod: this
// thread takes the CPU only when the event loop that answers ordinary reviews
// does not want it. On Linux the nice value is per thread (priority of the
// calling thread); elsewhere it would be the whole process's, so it is left.
if (process.platform === 'linux') {
  try {
    setPriority(19);
  } catch {
    // A sandbox may refuse it; the worker then shares the CPU evenly, which is only slower.
  }
}
const decoder = new TextDecoder();
// A full collection after each body (fullCollection): V8 would otherwise let
// this heap fill to its cap (and the process's RSS grow by as much) before
// collecting, though nothing of a decoded body outlives it. It runs here, off
// the main thread.

parentPort?.on('message', (job: DecodeJob) => {
  let answer: DecodeAnswer;
  try {
    let parsed: unknown;
    try {
      parsed = JSON.parse(decoder.decode(job.body));
    } catch (err) {
      answer = { id: job.id, invalidJson: (err as Error).message };
      parentPort?.postMessage(answer);
      return;
    }
    answer = { id: job.id, review: withOwnAnnotations(decodeReview(parsed), annotationPrefix) };
  } catch (err) {
    if (!(err instanceof BadReviewError)) throw err;
    answer = { id: job.id, badReview: err.message };
  }
  parentPort?.postMessage(answer);
  fullCollection();
});
