/**
 * Every task the server knows, kept current from the all-tasks event stream.
 *
 * Events change the state at once (cheap), but listeners hear about it at most every
 * FLUSH_MS, with the set of tasks that changed: a row redraws at most ~10 times a second
 * whatever the step rate, and 50 busy rows cost one batch of DOM writes per tick.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { IInputs, parseInputs } from './inputs';
import { compareTasks, IFrame, RESUMABLE, TaskState } from './state';
import { EventStream, StreamState } from './stream';
import { ISummary, summarize } from './summary';

export { ISummary } from './summary';

export const FLUSH_MS = 100;
export const PAGE_SIZE = 50;
const VRAM_HISTORY = 60;

export type Availability = 'loading' | 'ready' | 'missing' | 'error';

/**
 * What the server says of a task beyond the reducer's state (./state.ts): whether a run that
 * ended can continue from its checkpoint, the run it continues or was continued by, and whether
 * a pause released the GPU memory. Kept here, one mutable object per task, read by its row.
 */
export interface IRunNotes {
  resumable: boolean;
  checkpointStep: number | null;
  resumedFrom: string | null;
  resumedAs: string | null;
  memoryReleased: boolean;
}

/** The answer to Resume: the task continuing the run, or why there is none. */
export interface IResumeAnswer {
  newId: string | null;
  error: string | null;
}

// A run that ended this way may have kept a checkpoint: its snapshot says whether it can go on
// (stopped / interrupted as the reducer reads it; the others as older producers end).
const MAY_RESUME = new Set(['cancelled', 'lost', 'failed', ...RESUMABLE]);

export class TaskStore {
  readonly tasks = new Map<string, TaskState>();
  /** Recent device-memory readings (used share, %), oldest first, for the sparkline. */
  readonly vramHistory: number[] = [];
  availability: Availability = 'loading';
  streamState: StreamState = 'connecting';
  errorText = '';
  /** Whether the server may hold older finished tasks than those loaded. */
  moreOnServer = false;

  private _changed = new Signal<TaskStore, ReadonlySet<string>>(this);
  private _ended = new Signal<TaskStore, TaskState>(this);
  private _notes = new Map<string, IRunNotes>();
  private _dirty = new Set<string>();
  private _timer: number | null = null;
  private _stream: EventStream;
  private _pending: IFrame[] | null = []; // events that arrive before the first listing
  private _offset = 0;

  constructor(readonly settings: ServerConnection.ISettings) {
    this._stream = new EventStream(settings, {
      event: (type, _id, data) => this._onEvent(data),
      state: state => {
        this.streamState = state;
        if (state === 'missing') {
          this.availability = 'missing';
        }
        this._touch('');
      },
      opened: resumed => {
        // A fresh connection after a drop may be to a restarted server: its listing (which
        // includes runs found on disk) is the truth to resume from.
        if (resumed) {
          void this.refresh();
        }
      }
    });
  }

  /** Emitted at most every FLUSH_MS with the ids that changed ('' = the store itself). */
  get changed(): ISignal<TaskStore, ReadonlySet<string>> {
    return this._changed;
  }

  /** Emitted (at once) when an event ends a task this page saw unfinished. */
  get ended(): ISignal<TaskStore, TaskState> {
    return this._ended;
  }

  /** The notes of a task (the same object for the task's life: rows keep it). */
  notes(id: string): IRunNotes {
    let notes = this._notes.get(id);
    if (!notes) {
      notes = { resumable: false, checkpointStep: null, resumedFrom: null, resumedAs: null, memoryReleased: false };
      this._notes.set(id, notes);
    }
    return notes;
  }

  /**
   * `POST …/resume` of a run that ended with a checkpoint: a live process with a generator of its
   * model continues it as a new task (`resumed_as`), fetched here so the sidebar can follow it.
   */
  async resumeRun(taskId: string): Promise<IResumeAnswer> {
    const url = URLExt.join(this.settings.baseUrl, 'wan-nb/api/tasks', taskId, 'resume');
    const response = await ServerConnection.makeRequest(url, { method: 'POST' }, this.settings);
    if (response.status !== 202) {
      return { newId: null, error: (await errorMessage(response)) || `resume answered ${response.status}` };
    }
    const body = await response.json();
    const newId = typeof body.resumed_as === 'string' ? body.resumed_as : null;
    if (newId) {
      this._link(taskId, newId);
      if (!this.tasks.has(newId)) {
        void this._loadOne(newId);
      }
    }
    return { newId, error: null };
  }

  start(): void {
    this._stream.start(); // first, so nothing between the listing and the stream is lost
    void this.refresh();
  }

  dispose(): void {
    this._stream.stop();
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
  }

  /** Tasks in display order. */
  ordered(): TaskState[] {
    return [...this.tasks.values()].sort(compareTasks);
  }

  summary(): ISummary {
    return summarize(this.tasks.values());
  }

  /** Reload the first page of the listing (on start and after a reconnection). */
  async refresh(): Promise<void> {
    this._offset = 0;
    await this._load(0);
  }

  async loadMore(): Promise<void> {
    await this._load(this._offset);
  }

  async cancel(taskId: string): Promise<string | null> {
    return this.steer(taskId, 'cancel');
  }

  /**
   * `POST wan-nb/api/tasks/{id}/{action}` (cancel, pause, resume; move with `{"index": n}`,
   * pause with `{"release_memory": true}`): null once the task's process took it (202), else the
   * reason it could not.
   */
  async steer(
    taskId: string,
    action: string,
    options: { index?: number; releaseMemory?: boolean } = {}
  ): Promise<string | null> {
    const url = URLExt.join(this.settings.baseUrl, 'wan-nb/api/tasks', taskId, action);
    const init: RequestInit = { method: 'POST' };
    if (options.index !== undefined) {
      init.body = JSON.stringify({ index: options.index });
    } else if (options.releaseMemory) {
      init.body = JSON.stringify({ release_memory: true });
    }
    const response = await ServerConnection.makeRequest(url, init, this.settings);
    if (response.status === 202) {
      return null;
    }
    return (await errorMessage(response)) || `${action} answered ${response.status}`;
  }

  videoUrl(task: TaskState, scene?: number): string {
    const parts = ['wan-nb/api/tasks', task.id, 'video'];
    if (scene !== undefined) {
      parts.push('scenes', String(scene));
    }
    return URLExt.join(this.settings.baseUrl, ...parts);
  }

  /** The task's inputs from a fresh snapshot (a live task's folder lists them once the run has
   * stored them); what is already known if the server cannot say. */
  async inputsOf(taskId: string): Promise<IInputs> {
    const task = this._task(taskId);
    const url = URLExt.join(this.settings.baseUrl, 'wan-nb/api/tasks', taskId);
    try {
      const response = await ServerConnection.makeRequest(url, {}, this.settings);
      if (response.ok) {
        const snap = await response.json();
        if (snap && snap.inputs !== undefined) {
          task.inputs = parseInputs(snap.inputs);
        }
      }
    } catch (err) {
      console.debug('wan_nb: no snapshot of', taskId, err);
    }
    return task.inputs;
  }

  private async _load(offset: number): Promise<void> {
    const query = URLExt.objectToQueryString({ limit: PAGE_SIZE, offset });
    const url = URLExt.join(this.settings.baseUrl, 'wan-nb/api/tasks') + query;
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, {}, this.settings);
    } catch (err) {
      this._fail(`cannot reach the server: ${err}`);
      return;
    }
    if (response.status === 404) {
      this.availability = 'missing';
      this._stream.stop();
      this._touch('');
      return;
    }
    if (!response.ok) {
      this._fail((await errorMessage(response)) || `the server answered ${response.status}`);
      return;
    }
    const body = await response.json();
    const snaps: any[] = Array.isArray(body.tasks) ? body.tasks : [];
    for (const snap of snaps) {
      if (!snap || typeof snap.task_id !== 'string') {
        continue;
      }
      const task = this._task(snap.task_id);
      if (this._absorb(task, snap)) {
        this._touch(task.id);
      }
    }
    // A server without paging answers with everything: more rows than asked for. One with
    // paging says how many there are in X-Total-Count.
    const header = response.headers.get('X-Total-Count');
    const total = header !== null && /^\d+$/.test(header) ? Number(header) : null;
    this._offset = offset + snaps.length;
    this.moreOnServer =
      snaps.length <= PAGE_SIZE &&
      (total !== null ? this._offset < total : snaps.length === PAGE_SIZE);
    this.availability = 'ready';
    if (offset === 0 && this.moreOnServer) {
      // Older runs wait for "Load older runs", but whatever is still going must show now.
      await Promise.all(['running', 'paused', 'queued'].map(status => this._loadStatus(status)));
    }
    if (this._pending) {
      const pending = this._pending;
      this._pending = null;
      pending.forEach(frame => this._applyFrame(frame));
    }
    this._touch('');
  }

  private async _loadStatus(status: string): Promise<void> {
    const query = URLExt.objectToQueryString({ status, limit: 1000 });
    const url = URLExt.join(this.settings.baseUrl, 'wan-nb/api/tasks') + query;
    try {
      const response = await ServerConnection.makeRequest(url, {}, this.settings);
      const body = response.ok ? await response.json() : { tasks: [] };
      for (const snap of Array.isArray(body.tasks) ? body.tasks : []) {
        if (snap && typeof snap.task_id === 'string') {
          if (this._absorb(this._task(snap.task_id), snap)) {
            this._touch(snap.task_id);
          }
        }
      }
    } catch (err) {
      console.debug('wan_nb: cannot list', status, 'tasks', err);
    }
  }

  private async _loadOne(taskId: string): Promise<void> {
    const url = URLExt.join(this.settings.baseUrl, 'wan-nb/api/tasks', taskId);
    try {
      const response = await ServerConnection.makeRequest(url, {}, this.settings);
      if (response.ok) {
        const snap = await response.json();
        if (snap && snap.task_id === taskId && this._absorb(this._task(taskId), snap)) {
          this._touch(taskId);
        }
      }
    } catch (err) {
      console.debug('wan_nb: no snapshot of', taskId, err);
    }
  }

  /** A snapshot into the task's state and notes; true if either changed. */
  private _absorb(task: TaskState, snap: { [key: string]: any }): boolean {
    const state = task.applySnapshot(snap);
    return this._noteSnapshot(snap) || state;
  }

  /** The snapshot's resume fields into the task's notes; true if any changed. */
  private _noteSnapshot(snap: { [key: string]: any }): boolean {
    const notes = this.notes(snap.task_id);
    const before = [notes.resumable, notes.checkpointStep, notes.resumedFrom].join('|');
    notes.resumable = snap.resumable === true;
    notes.checkpointStep = typeof snap.checkpoint_step === 'number' ? snap.checkpoint_step : null;
    if (typeof snap.resumed_from === 'string' && snap.resumed_from) {
      this._link(snap.resumed_from, snap.task_id);
    }
    return before !== [notes.resumable, notes.checkpointStep, notes.resumedFrom].join('|');
  }

  /** `newId` continues `oldId`: both rows say so (the old one offers Resume no more). */
  private _link(oldId: string, newId: string): void {
    const old = this.notes(oldId);
    if (old.resumedAs !== newId) {
      old.resumedAs = newId;
      this._touch(oldId);
    }
    this.notes(newId).resumedFrom = oldId;
  }

  private _fail(text: string): void {
    if (this.availability !== 'ready') {
      this.availability = 'error';
    }
    this.errorText = text;
    this._touch('');
  }

  private _onEvent(frame: any): void {
    if (!frame || typeof frame.task_id !== 'string' || typeof frame.type !== 'string') {
      return;
    }
    if (this._pending) {
      this._pending.push(frame);
      return;
    }
    this._applyFrame(frame);
  }

  private _applyFrame(frame: IFrame): void {
    const known = this.tasks.has(frame.task_id);
    const task = this._task(frame.task_id);
    if (!known && frame.type !== 'generation_started' && frame.type !== 'storyboard_progress') {
      // Begun before this page listened and not on the listing's first page: its prompt and
      // model are in its snapshot.
      void this._loadOne(task.id);
    }
    const wasFinished = task.finished;
    if (!task.apply(frame)) {
      return;
    }
    this._noteFrame(task, frame, wasFinished);
    const parent = task.storyboardId ? this.tasks.get(task.storyboardId) : undefined;
    if (frame.type === 'preview' && parent && task.preview && !parent.finished) {
      parent.preview = task.preview; // a storyboard shows the scene being rendered now
      this._touch(parent.id);
    }
    if (frame.type === 'vram_monitoring' && task.vram?.percent !== null && task.vram) {
      this.vramHistory.push(task.vram.percent as number);
      if (this.vramHistory.length > VRAM_HISTORY) {
        this.vramHistory.shift();
      }
      this._touch('');
    }
    this._touch(task.id);
  }

  private _noteFrame(task: TaskState, frame: IFrame, wasFinished: boolean): void {
    const data = frame.data || {};
    if (frame.type === 'generation_paused') {
      // task.pause(release_memory=True): the pipeline left the GPU while it waits
      this.notes(task.id).memoryReleased = data.release_memory === true;
    } else if (frame.type === 'generation_resumed') {
      this.notes(task.id).memoryReleased = false;
    } else if (frame.type === 'generation_started' && typeof data.resumed_from === 'string') {
      this._link(data.resumed_from, task.id);
    }
    if (!wasFinished && task.finished) {
      this._ended.emit(task);
      if (task.kind !== 'storyboard' && MAY_RESUME.has(task.status)) {
        void this._loadOne(task.id); // its snapshot says whether it kept a checkpoint
      }
    }
  }

  private _task(id: string): TaskState {
    let task = this.tasks.get(id);
    if (!task) {
      task = new TaskState(id);
      this.tasks.set(id, task);
    }
    return task;
  }

  private _touch(id: string): void {
    this._dirty.add(id);
    if (this._timer === null) {
      this._timer = window.setTimeout(() => this._flush(), FLUSH_MS);
    }
  }

  private _flush(): void {
    this._timer = null;
    const dirty = this._dirty;
    this._dirty = new Set();
    this._changed.emit(dirty);
  }
}

async function errorMessage(response: Response): Promise<string> {
  try {
    const body = await response.json();
    return body.message || body.reason || '';
  } catch {
    return '';
  }
}
