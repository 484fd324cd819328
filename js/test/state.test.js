// The sidebar's reducer, on the compiled module (`npx tsc` writes lib/): node --test test/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { clock, rate } from '../lib/format.js';
import { compareTasks, queuedLabel, TaskState } from '../lib/state.js';

let seq = 0;
function frame(type, data = {}, at = '2026-01-01T00:00:00.000Z') {
  return { type, seq: ++seq, task_id: 't', data: { ...data, timestamp: at } };
}

test('a run from start to finish, each event applied once', () => {
  seq = 0;
  const task = new TaskState('t');
  const started = frame('generation_started', {
    model_type: 'tiny',
    params: { prompt: 'a fox', steps: 4, seed: 3 }
  });
  assert.equal(task.apply(started), true);
  assert.equal(task.apply(started), false); // a replay after a resume changes nothing
  for (let step = 1; step <= 4; step++) {
    const at = `2026-01-01T00:00:0${step}.000Z`;
    task.apply(frame('detailed_generation_progress', {
      stage: 'generating', progress: step * 20, current_step: step, total_steps: 4,
      estimated_time_remaining: 4 - step
    }, at));
  }
  assert.equal(task.status, 'running');
  assert.equal(task.step, 4);
  assert.equal(task.rate, 1); // one step a second, from the events' own timestamps
  task.apply(frame('generation_completed', { output_path: '/r/t/video.mp4', duration_s: 5 }));
  assert.equal(task.status, 'completed');
  assert.equal(task.progress, 100);
  assert.equal(task.duration, 5);
  assert.equal(task.applied, task.lastSeq);
  task.apply(frame('generation_failed', { error: 'late' }));
  assert.equal(task.status, 'completed'); // nothing after a terminal event changes the outcome
});

test('progress never goes back; a lost producer reads "lost"', () => {
  seq = 0;
  const task = new TaskState('t');
  task.apply(frame('detailed_generation_progress', { progress: 50 }));
  task.apply(frame('detailed_generation_progress', { progress: 30 }));
  assert.equal(task.progress, 50);
  task.apply(frame('generation_failed', { error_type: 'ProducerLost', error: 'pid 1 ended' }));
  assert.equal(task.status, 'lost');
});

test('a storyboard gains its scenes one by one, then its film', () => {
  seq = 0;
  const board = new TaskState('t');
  board.apply(frame('storyboard_progress', { step: 'videos', status: 'in_progress', progress: 40,
    data: { scene_videos: ['/r/t/scenes/1.mp4'] } }));
  assert.equal(board.kind, 'storyboard');
  assert.deepEqual(board.scenePaths, ['/r/t/scenes/1.mp4']);
  board.apply(frame('storyboard_progress', { step: 'complete', status: 'completed', progress: 100,
    data: { scene_videos: ['/r/t/scenes/1.mp4', '/r/t/scenes/2.mp4'], final_video_path: '/r/t/film.mp4' } }));
  assert.equal(board.status, 'completed');
  assert.equal(board.scenePaths.length, 2);
  assert.equal(board.outputPath, '/r/t/film.mp4');
});

test('an older snapshot fills gaps only; a newer one wins', () => {
  seq = 0;
  const task = new TaskState('t');
  task.apply(frame('detailed_generation_progress', { progress: 60, current_step: 3 }));
  task.applySnapshot({ last_seq: 1, prompt: 'an owl', model_type: 'tiny', status: 'queued', progress: 0 });
  assert.equal(task.prompt, 'an owl');
  assert.equal(task.status, 'running');
  task.applySnapshot({ last_seq: 9, status: 'completed', progress: 100 });
  assert.equal(task.status, 'completed');
});

test('running first, then queued in run order, then finished newest first', () => {
  const make = (id, status, createdAt) => Object.assign(new TaskState(id), { status, createdAt });
  const tasks = [
    make('old-done', 'completed', '1'), make('q2', 'queued', '6'), make('run', 'running', '2'),
    make('new-done', 'failed', '9'), make('q1', 'queued', '5')
  ];
  assert.deepEqual(tasks.sort(compareTasks).map(t => t.id), ['run', 'q1', 'q2', 'new-done', 'old-done']);
});

test('readings for people', () => {
  assert.equal(clock(80), '1:20');
  assert.equal(clock(3725), '1:02:05');
  assert.equal(rate(2.44), '2.4 it/s');
  assert.equal(rate(0.25), '4.0 s/it');
  assert.equal(rate(null), '');
});

test('a task waiting behind another reads "Queued (#n)" until the worker starts it', () => {
  seq = 0;
  const task = new TaskState('t');
  task.apply(frame('generation_started', { model_type: 'tiny', params: { prompt: 'an owl', steps: 4 } }));
  assert.equal(task.status, 'queued'); // what will run, not that it runs
  task.apply(frame('generation_queued', { queue_position: 1, ahead: 2 }));
  assert.equal(task.status, 'queued');
  assert.equal(task.queuePosition, 1);
  assert.equal(task.queueAhead, 2);
  assert.equal(queuedLabel(task.queuePosition), 'Queued (#2)');
  task.apply(frame('vram_monitoring', { allocated_mb: 1 })); // says nothing about the queue
  assert.equal(task.status, 'queued');
  task.apply(frame('generation_queued', { queue_position: 0, ahead: 1 })); // the one ahead moved
  assert.equal(task.queuePosition, 0);
  task.apply(frame('generation_stage', { stage: 'initializing', stage_message: 'Starting' }));
  assert.equal(task.status, 'running');
  assert.equal(task.queuePosition, null);
  assert.equal(queuedLabel(null), 'Queued');
});

test('a snapshot carries the queue position only while queued', () => {
  const task = new TaskState('t');
  task.applySnapshot({ last_seq: 2, status: 'queued', queue_position: 3 });
  assert.equal(task.queuePosition, 3);
  task.applySnapshot({ last_seq: 5, status: 'running', queue_position: null });
  assert.equal(task.queuePosition, null);
});

test('queued tasks sort by their queue position once they know it', () => {
  const make = (id, status, createdAt, queuePosition) =>
    Object.assign(new TaskState(id), { status, createdAt, queuePosition });
  const tasks = [make('q-first-made', 'queued', '1', 2), make('run', 'running', '0', null),
    make('q-moved-up', 'queued', '3', 0), make('q-mid', 'queued', '2', 1)];
  assert.deepEqual(tasks.sort(compareTasks).map(t => t.id), ['run', 'q-moved-up', 'q-mid', 'q-first-made']);
});

test('post-processing: the step and its count while it runs, nothing before or after', () => {
  seq = 0;
  const task = new TaskState('t');
  task.apply(frame('generation_started', { model_type: 'tiny', params: { prompt: 'a fox', steps: 4 } }));
  task.apply(frame('detailed_generation_progress', { stage: 'generating', progress: 40, current_step: 4, total_steps: 4 }));
  assert.equal(task.postLabel, '');
  // the decode: the stage, no step of its own yet
  task.apply(frame('detailed_generation_progress', { stage: 'post_processing', progress: 82 }));
  assert.equal(task.postStep, null);
  assert.equal(task.postLabel, '');
  task.apply(frame('detailed_generation_progress', {
    stage: 'post_processing', progress: 90, post_step: 'interpolate', post_done: 3, post_total: 8
  }));
  assert.deepEqual([task.postStep, task.postDone, task.postTotal], ['interpolate', 3, 8]);
  assert.equal(task.postLabel, ' · interpolate 3/8');
  task.apply(frame('detailed_generation_progress', {
    stage: 'post_processing', progress: 95, post_step: 'upscale', post_done: 0, post_total: 17
  }));
  assert.equal(task.postLabel, ' · upscale 0/17');
  // a count that is not one still names the step
  task.apply(frame('detailed_generation_progress', {
    stage: 'post_processing', progress: 96, post_step: 'upscale', post_done: -1, post_total: 'x'
  }));
  assert.equal(task.postLabel, ' · upscale');
  task.apply(frame('generation_completed', { output_path: '/r/video.mp4', duration_s: 3 }));
  assert.equal(task.postLabel, '');
});

test('a ProducerLost ending that names the checkpoint the server found reads interrupted', () => {
  seq = 0;
  const task = new TaskState('t');
  task.apply(frame('detailed_generation_progress', { stage: 'generating', current_step: 3, total_steps: 8 }));
  task.apply(frame('generation_failed', { error_type: 'ProducerLost', error: 'gone', checkpoint_step: 3 }));
  assert.deepEqual([task.status, task.checkpointStep, task.resumable], ['interrupted', 3, true]);
  assert.equal(task.message, 'Interrupted at step 3/8: resumable');
  const bare = new TaskState('u');
  seq = 0;
  bare.apply(frame('generation_failed', { error_type: 'ProducerLost', error: 'gone', checkpoint_step: 0 }));
  assert.equal(bare.status, 'lost');
});
