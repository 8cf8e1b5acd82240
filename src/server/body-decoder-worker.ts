// The worker thread of body-decoder.ts: parses a large request body and sends
// back only its decoded review. Its heap is small and its own, so megabytes of
// hostile JSON are collected here, and parsing them never blocks the event
// loop that answers the API server's ordinary reviews.
import { parentPort, workerData } from 'node:worker_threads';
import { BadReviewError, decodeReview, withOwnAnnotations } from './admission.js';
import type { DecodeAnswer, DecodeJob } from './body-decoder.js';

const { annotationPrefix } = workerData as { annotationPrefix: string };
const decoder = new TextDecoder();

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
});
