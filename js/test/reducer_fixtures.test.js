// The sidebar's reducer against the fixtures the Python reducer reads too
// (tests/protocol/fixtures/*.json, run by tests/protocol/test_reducer_fixtures.py): the same event
// sequences must leave the same state in both, so the sidebar shows what the REST API reports.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

import { TaskState } from '../lib/state.js';

const FIXTURES = new URL('../../tests/protocol/fixtures/', import.meta.url);

// The snapshot's field names (what the fixtures expect) -> how this reducer reads each.
const READ = {
  kind: t => t.kind,
  status: t => t.status,
  stage: t => t.stage,
  progress: t => t.progress,
  message: t => t.message,
  estimated_time_remaining: t => t.eta,
  current_step: t => t.step,
  total_steps: t => t.totalSteps,
  model_type: t => t.model,
  prompt: t => t.prompt,
  params: t => t.params,
  seed: t => t.seed,
  storyboard_id: t => t.storyboardId,
  created_at: t => t.createdAt,
  updated_at: t => t.updatedAt,
  output_path: t => t.outputPath,
  scene_videos: t => t.scenePaths,
  error: t => t.error,
  duration_s: t => t.durationS,
  last_seq: t => t.lastSeq,
  queue_position: t => t.queuePosition,
  queue_ahead: t => t.queueAhead,
  finished: t => t.finished,
  checkpoint_step: t => t.checkpointStep,
  resumable: t => t.resumable
};

const files = readdirSync(FIXTURES).filter(name => name.endsWith('.json')).sort();

test('the fixtures are there and name only fields this runner reads', () => {
  assert.ok(files.length >= 8, `only ${files.length} fixtures in ${FIXTURES.pathname}`);
  for (const name of files) {
    const { steps } = JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));
    for (const step of steps) {
      for (const field of Object.keys(step.expect || {})) {
        assert.ok(field in READ, `${name}: no reading of ${field} here`);
      }
    }
  }
});

for (const name of files) {
  const fixture = JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));
  test(`fixture ${name}: ${fixture.about}`, () => {
    const task = new TaskState(fixture.steps[0].frame.task_id);
    fixture.steps.forEach((step, index) => {
      task.apply(step.frame);
      const expected = step.expect || {};
      const got = Object.fromEntries(Object.keys(expected).map(field => [field, READ[field](task)]));
      assert.deepEqual(got, expected, `${name}, after step ${index + 1} (${step.frame.type})`);
    });
  });
}
