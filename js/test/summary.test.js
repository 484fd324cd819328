// The sidebar header's and status bar's summary, on the compiled module: node --test test/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { megabytes } from '../lib/format.js';
import { TaskState } from '../lib/state.js';
import { summarize, timeLeft } from '../lib/summary.js';

let seq = 0;
function frame(type, data = {}, at = '2026-01-01T00:00:00.000Z') {
  return { type, seq: ++seq, task_id: 't', data: { ...data, timestamp: at } };
}

function stepping(id, step, eta) {
  seq = 0;
  const task = new TaskState(id);
  task.apply(frame('generation_started', { model_type: 'tiny', params: { prompt: id, steps: 8 } }));
  task.apply(frame('detailed_generation_progress', {
    stage: 'generating', progress: 50, current_step: step, total_steps: 8, estimated_time_remaining: eta
  }, '2026-01-01T00:00:01.000Z'));
  return task;
}

test('a paused run is counted as paused, not running, and gives no time left', () => {
  const running = stepping('a', 4, 10);
  const paused = stepping('b', 2, 30);
  paused.apply(frame('generation_paused', { stage: 'generating', current_step: 2 }, '2026-01-01T00:00:02.000Z'));
  assert.equal(paused.status, 'paused');
  const s = summarize([running, paused], 1_000);
  assert.equal(s.running, 1);
  assert.equal(s.paused, 1);
  assert.equal(s.eta, 10);
  assert.equal(timeLeft(paused, 1_000), null);
});

test('time left counts down between events instead of standing still', () => {
  const task = stepping('c', 4, 10);
  assert.equal(timeLeft(task, 5_000), 10);
  assert.equal(timeLeft(task, 8_000), 7);
  assert.equal(timeLeft(task, 60_000), 0);     // never below zero
  task.apply(frame('detailed_generation_progress', {
    stage: 'post_processing', progress: 95, current_step: 8, total_steps: 8, estimated_time_remaining: null
  }, '2026-01-01T00:00:09.000Z'));
  assert.equal(timeLeft(task, 9_000), 6);      // decode sends no figure: the last one keeps counting
});

test('memory in binary units, as the notebook chart writes it', () => {
  assert.equal(megabytes(24064), '23.5 GiB');
  assert.equal(megabytes(300), '300 MiB');
});
