/**
 * What the browser notification says when a run or storyboard ends, and whether one is due.
 * No DOM here (node --test loads it): ./notify.ts shows it.
 */

/** The fields of a task (a TaskState) that the notice reads. */
export interface IEndedTask {
  id: string;
  kind: string;
  status: string;
  prompt: string | null;
  error: string | null;
  storyboardId: string | null;
}

export interface INotice {
  title: string;
  body: string;
  /** One notice per task: a second end of the same task (a replay) replaces, never stacks. */
  tag: string;
}

const ENDINGS: { [status: string]: string } = {
  completed: 'finished',
  failed: 'failed',
  lost: 'was lost (its process ended)'
};
// A cancel or a stop_after preview is the user's own doing: no notice for those.

/**
 * The notice for `task`, which just ended; null where none is due: a storyboard's scene (its
 * storyboard gets one at the end), a status that is not an ending, or a page the user is looking at.
 */
export function endNotice(task: IEndedTask, pageHidden: boolean, enabled: boolean): INotice | null {
  const ending = ENDINGS[task.status];
  if (!enabled || !pageHidden || !ending || task.storyboardId) {
    return null;
  }
  const what = task.kind === 'storyboard' ? 'Wan storyboard' : 'Wan run';
  const prompt = task.prompt || task.id;
  const short = prompt.length > 80 ? prompt.slice(0, 77) + '...' : prompt;
  const detail = (task.status === 'failed' || task.status === 'lost') && task.error ? `\n${task.error}` : '';
  return { title: `${what} ${ending}`, body: `${short}${detail}`.slice(0, 300), tag: `wan-nb-${task.id}` };
}
