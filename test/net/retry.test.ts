// The one retry policy (src/net/retry.ts) used by Hub API calls, Hub downloads and the registry client.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRetryableStatus, parseRetryAfter, RetryableError, retryDelayMs, withRetries, type RetryEvent } from '../../src/net/retry.js';

test('a retryable failure is tried again until it succeeds; each retry is reported', async () => {
  const events: RetryEvent[] = [];
  let calls = 0;
  const value = await withRetries({ retries: 3, baseDelayMs: 1 }, async (n) => {
    calls++;
    if (n < 3) throw new RetryableError(`HTTP 503 #${n}`, { status: 503 });
    return 'ok';
  }, { onRetry: (e) => events.push(e) });
  assert.equal(value, 'ok');
  assert.equal(calls, 3);
  assert.deepEqual(events.map((e) => [e.attempt, e.reason]), [[1, 'HTTP 503 #1'], [2, 'HTTP 503 #2']]);
});

test('other errors end it at once; a spent budget throws the failure\'s final error', async () => {
  let calls = 0;
  await assert.rejects(withRetries({ retries: 5, baseDelayMs: 1 }, async () => {
    calls++;
    throw new TypeError('a bug');
  }), TypeError);
  assert.equal(calls, 1);
  calls = 0;
  const final = new Error('gave up on org/x');
  await assert.rejects(withRetries({ retries: 2, baseDelayMs: 1 }, async () => {
    calls++;
    throw new RetryableError('cut', { final });
  }), (e: unknown) => e === final);
  assert.equal(calls, 3, 'the first attempt and 2 retries');
});

test('Retry-After decides the wait (seconds or a date), capped', async () => {
  assert.equal(parseRetryAfter('2'), 2000);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter('soon'), undefined);
  const inFive = parseRetryAfter(new Date(Date.now() + 5000).toUTCString())!;
  assert.ok(inFive > 3000 && inFive <= 5000, String(inFive));
  assert.equal(retryDelayMs({ retries: 1 }, 1, 120_000), 60_000);
  const events: RetryEvent[] = [];
  const started = Date.now();
  await withRetries({ retries: 1, baseDelayMs: 10_000 }, async (n) => {
    if (n === 1) throw new RetryableError('HTTP 429', { status: 429, retryAfter: '1' });
  }, { onRetry: (e) => events.push(e) });
  assert.equal(events[0]!.delayMs, 1000);
  assert.ok(Date.now() - started >= 990, 'waited as the server asked, not the 10 s backoff');
});

test('backoff doubles per failure in a row, with jitter, capped', () => {
  for (let i = 0; i < 50; i++) {
    const d1 = retryDelayMs({ retries: 9, baseDelayMs: 100 }, 1);
    const d3 = retryDelayMs({ retries: 9, baseDelayMs: 100 }, 3);
    const d9 = retryDelayMs({ retries: 9, baseDelayMs: 100, maxDelayMs: 1000 }, 9);
    assert.ok(d1 >= 50 && d1 <= 100, String(d1));
    assert.ok(d3 >= 200 && d3 <= 400, String(d3));
    assert.ok(d9 >= 500 && d9 <= 1000, String(d9));
  }
});

test('an attempt that made progress is retried at once and starts the count afresh', async () => {
  const events: RetryEvent[] = [];
  // retries: 2 allows three failures in a row; a failure after progress counts as the first again.
  const script = ['stuck', 'progress', 'stuck', 'progress', 'stuck', 'done'];
  const value = await withRetries({ retries: 2, baseDelayMs: 1 }, async (n) => {
    const step = script[n - 1]!;
    if (step === 'done') return n;
    throw new RetryableError(step, { progressed: step === 'progress' });
  }, { onRetry: (e) => events.push(e) });
  assert.equal(value, 6);
  assert.deepEqual(events.map((e) => [e.attempt, e.delayMs === 0]), [[1, false], [1, true], [2, false], [1, true], [2, false]]);
  // Without progress the same five failures spend the budget.
  await assert.rejects(withRetries({ retries: 2, baseDelayMs: 1 }, async () => {
    throw new RetryableError('stuck');
  }), /stuck/);
});

test('an abort during the wait ends it with the abort reason', async () => {
  const ctl = new AbortController();
  const run = withRetries({ retries: 3, baseDelayMs: 60_000 }, async () => {
    throw new RetryableError('HTTP 500', { status: 500 });
  }, { signal: ctl.signal, onRetry: () => setTimeout(() => ctl.abort(new Error('user pressed ^C')), 10) });
  await assert.rejects(run, /user pressed \^C/);
});

test('which statuses are worth another attempt', () => {
  assert.deepEqual([408, 429, 500, 502, 503, 504].map(isRetryableStatus), [true, true, true, true, true, true]);
  assert.deepEqual([400, 401, 403, 404, 416, 501, 505].map(isRetryableStatus), [false, false, false, false, false, false, false]);
});
