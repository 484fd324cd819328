/** What the sidebar header and the status bar say about all tasks at once. */

import { TaskState } from './state';

export interface ISummary {
  /** Tasks stepping now (a paused one is not running: it holds, and its time left does not pass). */
  running: number;
  paused: number;
  queued: number;
  /** Mean progress of the running and paused tasks, or null when there are none. */
  progress: number | null;
  /** The longest time left among running tasks (paused ones wait on the user, not the clock). */
  eta: number | null;
}

export function summarize(tasks: Iterable<TaskState>, now: number = Date.now()): ISummary {
  let running = 0;
  let paused = 0;
  let queued = 0;
  let progress = 0;
  let eta: number | null = null;
  for (const task of tasks) {
    if (task.status === 'running' || task.status === 'paused') {
      progress += task.progress;
      if (task.status === 'paused') {
        paused++;
        continue;
      }
      running++;
      const left = timeLeft(task, now);
      if (left !== null) {
        eta = Math.max(eta ?? 0, left);
      }
    } else if (task.status === 'queued') {
      queued++;
    }
  }
  const active = running + paused;
  return { running, paused, queued, progress: active ? progress / active : null, eta };
}

/** When each task's time-left figure was last received here (this page's clock). */
const etaSeen = new WeakMap<TaskState, { eta: number; at: number }>();

/**
 * A running task's time left, counted down by this page's clock from the last figure its events
 * gave: decode and save send none, and a figure that stood still for seconds read as frozen.
 * A paused task has none (it waits on the user); a finished one none either.
 */
export function timeLeft(task: TaskState, now: number = Date.now()): number | null {
  if (task.status !== 'running') {
    etaSeen.delete(task);
    return null;
  }
  const seen = etaSeen.get(task);
  if (task.eta !== null && (!seen || seen.eta !== task.eta)) {
    etaSeen.set(task, { eta: task.eta, at: now });
    return task.eta;
  }
  return seen ? Math.max(0, seen.eta - (now - seen.at) / 1000) : null;
}
