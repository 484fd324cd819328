// The words of the "run ended" browser notification, on the compiled module: node --test test/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { endNotice } from '../lib/notices.js';

const run = (fields = {}) => ({
  id: 't1', kind: 'generation', status: 'completed', prompt: 'a red fox', error: null, storyboardId: null,
  ...fields
});

test('a run that ends while the page is hidden gets one notice, tagged by its id', () => {
  assert.deepEqual(endNotice(run(), true, true), { title: 'Wan run finished', body: 'a red fox', tag: 'wan-nb-t1' });
  const failed = endNotice(run({ status: 'failed', error: 'CUDA out of memory' }), true, true);
  assert.equal(failed.title, 'Wan run failed');
  assert.equal(failed.body, 'a red fox\nCUDA out of memory');
  assert.equal(endNotice(run({ status: 'lost' }), true, true).title, 'Wan run was lost (its process ended)');
  assert.equal(endNotice(run({ kind: 'storyboard', id: 'b' }), true, true).title, 'Wan storyboard finished');
});

test('none while the page is seen, with the setting off, for a scene or an unfinished task', () => {
  assert.equal(endNotice(run(), false, true), null);
  assert.equal(endNotice(run(), true, false), null);
  assert.equal(endNotice(run({ storyboardId: 'board' }), true, true), null);
  assert.equal(endNotice(run({ status: 'running' }), true, true), null);
});

test('a long prompt is cut, and a run without one is named by its id', () => {
  assert.equal(endNotice(run({ prompt: 'x'.repeat(200) }), true, true).body.length, 80);
  assert.equal(endNotice(run({ prompt: null }), true, true).body, 't1');
});
