/**
 * One task in the sidebar. Its DOM is built once and then patched field by field, and only
 * where a value changed: a busy row costs a few text writes per tick, never a rebuild.
 */

import { clock, megabytes, percent, rate, stageLabel } from './format';
import { queuedLabel, TaskState } from './state';
import { IRunNotes } from './store';
import { timeLeft } from './summary';

export type SteerAction = 'cancel' | 'pause' | 'resume' | 'move';

/** What a steering request carries besides its action (the route's JSON body). */
export interface ISteerOptions {
  /** Where a queued task moves to (0 = runs next). */
  index?: number;
  /** Pause and give the pipeline's GPU memory back (resume reloads it). */
  releaseMemory?: boolean;
}

export interface IRowActions {
  cancel(task: TaskState): void;
  /** Pause (optionally freeing the GPU memory), resume, or move a queued task through the server. */
  steer(task: TaskState, action: SteerAction, options?: ISteerOptions): void;
  /** Continue a run that ended with a checkpoint (a new task, which the sidebar then follows). */
  resumeRun(task: TaskState): void;
  play(task: TaskState, scene?: number): void;
  copy(task: TaskState): void;
  /** The run folder relative to the server root, or null where it is not under it. */
  folderOf(task: TaskState): string | null;
  openFolder(task: TaskState, folder: string): void;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  parent?: HTMLElement
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  parent?.appendChild(node);
  return node;
}

function setText(node: HTMLElement, text: string): void {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

function show(node: HTMLElement, visible: boolean): void {
  if (node.hidden === visible) {
    node.hidden = !visible;
  }
}

export class RowView {
  readonly node: HTMLElement;
  status = '';
  /** Its place in the queue as last drawn (the sidebar reorders when it changes). */
  queuePosition: number | null = null;
  private _thumb: HTMLImageElement;
  private _prompt: HTMLElement;
  private _meta: HTMLElement;
  private _bar: HTMLElement;
  private _fill: HTMLElement;
  private _steps: HTMLElement;
  private _eta: HTMLElement;
  private _vram: HTMLElement;
  private _duration: HTMLElement;
  private _error: HTMLElement;
  private _link: HTMLElement;
  private _scenes: HTMLElement;
  private _queue: HTMLElement;
  private _cancel: HTMLButtonElement;
  private _pause: HTMLButtonElement;
  private _pauseFree: HTMLButtonElement;
  private _resume: HTMLButtonElement;
  private _up: HTMLButtonElement;
  private _down: HTMLButtonElement;
  private _play: HTMLButtonElement;
  private _copy: HTMLButtonElement;
  private _folder: HTMLButtonElement;
  private _previewSrc = '';
  /** The server's last refusal of an action (shown until the status changes or another is asked). */
  private _refusal = '';
  private _sceneCount = -1;

  constructor(
    readonly task: TaskState,
    private readonly _actions: IRowActions,
    readonly notes: IRunNotes
  ) {
    const row = (this.node = el('li', 'wan-nb-Row'));
    row.dataset.taskId = task.id;
    const head = el('div', 'wan-nb-Row-head', row);
    this._thumb = el('img', 'wan-nb-Row-thumb', head);
    this._thumb.alt = 'live preview';
    this._thumb.hidden = true;
    const text = el('div', 'wan-nb-Row-text', head);
    this._prompt = el('div', 'wan-nb-Row-prompt', text);
    this._meta = el('div', 'wan-nb-Row-meta', text);
    this._queue = el('span', 'wan-nb-Row-queue', head);
    this._bar = el('div', 'wan-nb-Row-bar', row);
    this._bar.setAttribute('role', 'progressbar');
    this._bar.setAttribute('aria-valuemin', '0');
    this._bar.setAttribute('aria-valuemax', '100');
    this._fill = el('div', 'wan-nb-Row-fill', this._bar);
    const stats = el('div', 'wan-nb-Row-stats', row);
    this._steps = el('span', 'wan-nb-Row-steps', stats);
    this._eta = el('span', 'wan-nb-Row-eta', stats);
    this._vram = el('span', 'wan-nb-Row-vram', stats);
    this._duration = el('span', 'wan-nb-Row-duration', stats);
    this._error = el('div', 'wan-nb-Row-error', row);
    this._link = el('div', 'wan-nb-Row-link', row);
    this._scenes = el('div', 'wan-nb-Row-scenes', row);
    const actions = el('div', 'wan-nb-Row-actions', row);
    // Pause (or Resume) then Cancel: the order the notebook panel uses too.
    this._pause = this._button(actions, 'Pause', 'wan-nb-pause', () =>
      this._onSteer(this._pause, 'Pausing…', 'pause')
    );
    // A second pause that also frees the GPU: a long wait should not hold 20+ GB another run could use.
    this._pauseFree = this._button(actions, 'Pause & free GPU', 'wan-nb-pause-free', () =>
      this._onSteer(this._pauseFree, 'Pausing…', 'pause', { releaseMemory: true })
    );
    this._pauseFree.title =
      "Pause and release the pipeline's GPU memory for other work; Resume loads it back (takes a moment)";
    this._pause.title = 'Pause after the current step (the model stays in GPU memory)';
    this._resume = this._button(actions, 'Resume', 'wan-nb-resume', () => this._onResume());
    this._cancel = this._button(actions, 'Cancel', 'wan-nb-cancel', () => this._onCancel());
    this._up = this._button(actions, '▲', 'wan-nb-up', () => this._onMove(-1));
    this._down = this._button(actions, '▼', 'wan-nb-down', () => this._onMove(1));
    this._up.title = 'Run sooner';
    this._down.title = 'Run later';
    this._play = this._button(actions, 'Play', 'wan-nb-play', () => _actions.play(this.task));
    this._copy = this._button(actions, 'Copy', 'wan-nb-copy', () => _actions.copy(this.task));
    this._folder = this._button(actions, 'Folder', 'wan-nb-folder', () => {
      const folder = _actions.folderOf(this.task);
      if (folder !== null) {
        _actions.openFolder(this.task, folder);
      }
    });
    this.update();
  }

  update(): void {
    const t = this.task;
    if (t.status !== this.status) {
      this._settle(); // the request was answered by the task itself: buttons are live again
    }
    this.status = t.status;
    this.queuePosition = t.queuePosition;
    this.node.dataset.status = t.status;
    this.node.dataset.kind = t.kind;
    this.node.dataset.lastSeq = String(t.lastSeq);
    this.node.dataset.events = String(t.applied);
    const queued = t.status === 'queued';
    this.node.dataset.queuePosition = queued && t.queuePosition !== null ? String(t.queuePosition) : '';
    setText(this._queue, queued ? queuedLabel(t.queuePosition) : '');
    show(this._queue, queued);
    const prompt = t.prompt || (t.kind === 'storyboard' ? `Storyboard ${t.id}` : t.id);
    setText(this._prompt, prompt);
    this._prompt.title = prompt;
    const stage = t.stage && !t.finished && t.status !== 'queued' ? ` · ${stageLabel(t.stage)}` : '';
    const kind = t.kind === 'storyboard' ? 'storyboard' : t.model || 'model ?';
    const scene = t.storyboardId ? ' · scene' : '';
    setText(this._meta, `${kind}${scene} · ${t.status}${stage}${t.postLabel}`);

    const value = Math.round(t.progress);
    this._fill.style.width = `${value}%`;
    this._bar.setAttribute('aria-valuenow', String(value));
    this._bar.setAttribute('aria-label', `${prompt}: ${value} %`);

    const live = !t.finished;
    let steps = '';
    if (t.step !== null && t.totalSteps) {
      steps = `${percent(t.progress)} · steps ${t.step}/${t.totalSteps}`;
      const r = live ? rate(t.rate) : '';
      steps += r ? ` · ${r}` : '';
    } else if ((live && t.status !== 'queued') || t.progress) {
      steps = percent(t.progress);
    }
    setText(this._steps, steps);
    const left = timeLeft(t);
    const paused = this.notes.memoryReleased ? 'paused · GPU memory released' : 'paused';
    setText(this._eta, t.status === 'paused' ? paused : left !== null ? `${clock(left)} left` : '');
    const vram = live && t.vram ? t.vram : null;
    setText(
      this._vram,
      vram
        ? `mem ${vram.percent !== null ? percent(vram.percent) : '?'} · ${megabytes(
            vram.allocatedMb
          )}${vram.totalMb ? ` / ${megabytes(vram.totalMb)}` : ''}`
        : ''
    );
    if (vram) {
      this._vram.dataset.level = vram.level;
      this._vram.title = vram.device;
    }
    const duration = t.duration;
    setText(this._duration, t.finished && duration !== null ? `took ${clock(duration)}` : '');
    const problem = t.status === 'failed' || t.status === 'lost' ? t.error || t.message : '';
    setText(this._error, this._refusal || problem);
    show(this._error, !!this._error.textContent);

    if (t.preview && t.preview.src !== this._previewSrc) {
      this._previewSrc = t.preview.src;
      this._thumb.src = t.preview.src;
    }
    show(this._thumb, !!t.preview);

    const resumable = this._resumable();
    this.node.dataset.resumable = String(resumable);
    if (resumable && this.notes.checkpointStep !== null) {
      const how = t.status === 'lost' ? 'interrupted' : t.status === 'cancelled' ? 'stopped' : t.status;
      const total = t.totalSteps ? `/${t.totalSteps}` : '';
      setText(this._steps, `${how} at step ${this.notes.checkpointStep}${total} · resumable`);
    }
    const n = this.notes;
    setText(this._link, n.resumedAs ? `Resumed as ${n.resumedAs}` : n.resumedFrom ? `Continues ${n.resumedFrom}` : '');
    show(this._link, !!this._link.textContent);
    this._resume.title = resumable ? 'Continue from its last checkpoint' : '';

    this._updateScenes();
    show(this._cancel, live);
    const generation = t.kind !== 'storyboard';
    show(this._pause, generation && t.status === 'running');
    show(this._pauseFree, generation && t.status === 'running');
    show(this._resume, (generation && t.status === 'paused') || resumable);
    const movable = generation && queued && t.queuePosition !== null;
    show(this._up, movable && (t.queuePosition as number) > 0);
    show(this._down, movable);
    show(this._play, t.status === 'completed' && !!t.outputPath && t.kind !== 'storyboard');
    show(this._folder, this._actions.folderOf(t) !== null);
    const label = prompt.length > 60 ? prompt.slice(0, 57) + '...' : prompt;
    this._cancel.setAttribute('aria-label', `Cancel: ${label}`);
    this._pause.setAttribute('aria-label', `Pause: ${label}`);
    this._pauseFree.setAttribute('aria-label', `Pause and free GPU memory: ${label}`);
    this._resume.setAttribute('aria-label', `Resume: ${label}`);
    this._up.setAttribute('aria-label', `Run sooner: ${label}`);
    this._down.setAttribute('aria-label', `Run later: ${label}`);
    this._play.setAttribute('aria-label', `Play the video of: ${label}`);
    this._copy.setAttribute('aria-label', `Copy the prompt and parameters of: ${label}`);
    this._folder.setAttribute('aria-label', `Show the run folder of: ${label}`);
  }

  private _updateScenes(): void {
    const t = this.task;
    const final = t.kind === 'storyboard' && t.status === 'completed' && !!t.outputPath;
    const count = t.scenePaths.length + (final ? 1000 : 0);
    if (count === this._sceneCount) {
      return;
    }
    this._sceneCount = count;
    this._scenes.textContent = '';
    t.scenePaths.forEach((_path, i) => {
      const b = this._button(this._scenes, `Scene ${i + 1}`, 'wan-nb-scene', () =>
        this._actions.play(t, i + 1)
      );
      b.setAttribute('aria-label', `Play scene ${i + 1}`);
    });
    if (final) {
      const b = this._button(this._scenes, 'Final film', 'wan-nb-final', () =>
        this._actions.play(t)
      );
      b.setAttribute('aria-label', 'Play the final film');
    }
    show(this._scenes, count > 0);
  }

  private _onCancel(): void {
    this._cancel.disabled = true;
    setText(this._cancel, 'Cancelling…');
    this._actions.cancel(this.task);
  }

  private _onSteer(button: HTMLButtonElement, busy: string, action: SteerAction, options?: ISteerOptions): void {
    button.disabled = true;
    setText(button, busy);
    this._actions.steer(this.task, action, options);
  }

  /** A run that ended with a checkpoint, not yet continued from this page's knowledge. */
  private _resumable(): boolean {
    return this.task.finished && this.task.kind !== 'storyboard' && this.notes.resumable && !this.notes.resumedAs;
  }

  private _onResume(): void {
    if (this.task.status === 'paused') {
      this._onSteer(this._resume, 'Resuming…', 'resume');
      return;
    }
    this._refusal = '';
    delete this.node.dataset.refused;
    this._resume.disabled = true;
    setText(this._resume, 'Resuming…');
    this._actions.resumeRun(this.task);
  }

  /** One place up (-1) or down (+1) in its generator's queue. */
  private _onMove(by: number): void {
    const position = this.task.queuePosition;
    if (position === null) {
      return;
    }
    this._up.disabled = this._down.disabled = true;
    this._actions.steer(this.task, 'move', { index: Math.max(0, position + by) });
  }

  /** Buttons back to their resting labels (after an answer, or a change of status). */
  private _settle(): void {
    this._refusal = '';
    delete this.node.dataset.refused;
    const labels: [HTMLButtonElement, string][] = [
      [this._cancel, 'Cancel'],
      [this._pause, 'Pause'],
      [this._pauseFree, 'Pause & free GPU'],
      [this._resume, 'Resume'],
      [this._up, '▲'],
      [this._down, '▼']
    ];
    for (const [button, label] of labels) {
      button.disabled = false;
      setText(button, label);
    }
  }

  /** A move was accepted: the arrows work again (the new position arrives as an event). */
  moved(): void {
    this._up.disabled = this._down.disabled = false;
  }

  /** After the server refused: the buttons come back, the reason shows in the row. */
  steerFailed(reason: string): void {
    this._settle();
    this._refusal = reason;
    setText(this._error, reason);
    show(this._error, true);
    this.node.dataset.refused = 'true';
  }

  /** Resume was taken: the new task continues this run (the link shows it). */
  resumed(): void {
    this._settle();
    this.update();
  }

  private _button(
    parent: HTMLElement,
    label: string,
    className: string,
    onClick: () => void
  ): HTMLButtonElement {
    const b = el('button', `wan-nb-Button ${className}`, parent);
    b.type = 'button';
    b.textContent = label;
    b.addEventListener('click', event => {
      event.stopPropagation();
      onClick();
    });
    return b;
  }
}
