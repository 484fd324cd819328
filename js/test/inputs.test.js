// A snapshot's inputs as the player gets them, on the compiled modules: node --test test/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { inputLabel, parseInputs, sameInputs } from '../lib/inputs.js';
import { TaskState } from '../lib/state.js';

const url = file => `/wan-nb/api/tasks/t1/inputs/${file}`;

test('well-formed inputs are kept in the server order; anything else is dropped', () => {
  const parsed = parseInputs({
    image: { kind: 'image', urls: [url('image.png')] },
    reference_images: { kind: 'images', urls: [url('r_00.png'), url('r_01.png')] },
    video: { kind: 'video', urls: [url('video.mp4')] },
    mask: { kind: 'script', urls: [url('mask.mp4')] },                  // unknown kind
    pose_video: { kind: 'video', urls: ['https://elsewhere.example/x.mp4'] }, // another origin
    face_video: { kind: 'video', urls: ['//elsewhere.example/wan-nb/api/tasks/t/inputs/f.mp4'] },
    background_video: { kind: 'video', urls: ['/wan-nb/api/tasks/t1/video'] }, // not the inputs route
    last_image: { kind: 'image', urls: 'not a list' }
  });
  assert.deepEqual(Object.keys(parsed), ['image', 'reference_images', 'video']);
  assert.deepEqual(parsed.reference_images.urls, [url('r_00.png'), url('r_01.png')]);
  for (const bad of [null, undefined, 'x', [], 3]) {
    assert.deepEqual(parseInputs(bad), {});
  }
});

test('labels say what each input is for', () => {
  assert.equal(inputLabel('image', ['image', 'last_image']), 'first frame');
  assert.equal(inputLabel('last_image', ['image', 'last_image']), 'last frame');
  assert.equal(inputLabel('video', ['video']), 'source video');                 // video-to-video
  assert.equal(inputLabel('video', ['video', 'mask']), 'control video');        // VACE
  assert.equal(inputLabel('image', ['image', 'pose_video']), 'character');      // Animate
  assert.equal(inputLabel('background_video', []), 'background video');
});

test('a task takes its inputs from snapshots, also from one older than its events', () => {
  const task = new TaskState('t1');
  assert.deepEqual(task.inputs, {});
  task.applySnapshot({ task_id: 't1', last_seq: 5, status: 'running', inputs: {} });
  assert.deepEqual(task.inputs, {});
  task.apply({ type: 'detailed_generation_progress', seq: 6, task_id: 't1', data: { progress: 50 } });
  const later = { task_id: 't1', last_seq: 6, inputs: { image: { kind: 'image', urls: [url('image.png')] } } };
  assert.equal(task.applySnapshot(later), true);   // no newer than the events, but it names the inputs
  assert.deepEqual(Object.keys(task.inputs), ['image']);
  assert.ok(sameInputs(task.inputs, parseInputs(later.inputs)));
  assert.equal(task.applySnapshot(later), false);  // the same again: nothing to redraw
  assert.ok(!sameInputs(task.inputs, {}));
});
