import { IInputs, parseInputs, sameInputs } from './inputs.js'; // with .js: node --test loads lib/ as ES modules

/**
 * One task's state in the browser, fed by the server's snapshots and by event frames
 * (`{type, seq, task_id, data}`). Mirrors the server's reducer (wan_nb/protocol/snapshot.py) so a
 * row shows the same status the REST API reports; no DOM here.
 */

export type Status =
  | 'queued'
  | 'running'
  | 'paused'
  | 'completed'
  | 'failed'
  | 'cancelled'
  | 'stopped'
  | 'interrupted'
  | 'lost';

// The statuses a task never leaves: wan_nb/protocol/statuses.py owns them (FINISHED there);
// tests/test_rule_owners.py holds this copy and the Status type above to it.
export const FINISHED: ReadonlySet<string> = new Set([
  'completed',
  'failed',
  'cancelled',
  'stopped',
  'interrupted',
  'lost'
]);

/** Finished but resumable from its checkpoint (wan_nb/protocol/statuses.py RESUMABLE). */
export const RESUMABLE: ReadonlySet<string> = new Set(['stopped', 'interrupted']);

export interface IFrame {
  type: string;
  seq: number;
  task_id: string;
  data: { [key: string]: any };
}

export interface IVram {
  allocatedMb: number | null;
  totalMb: number | null;
  percent: number | null;
  level: string;
  device: string;
}

export interface IPreview {
  src: string;
  step: number;
  width: number;
  height: number;
}

/** Steps seen at client-independent (event) times, for the it/s figure. */
interface IStepSample {
  step: number;
  at: number;
}

const RATE_WINDOW = 8; // samples: smooths jitter, still follows a change of pace

export class TaskState {
  readonly id: string;
  kind = 'generation';
  status: Status = 'queued';
  stage: string | null = null;
  progress = 0;
  message = '';
  eta: number | null = null;
  step: number | null = null;
  totalSteps: number | null = null;
  model: string | null = null;
  prompt: string | null = null;
  params: { [key: string]: any } | null = null;
  seed: number | null = null;
  storyboardId: string | null = null;
  createdAt: string | null = null;
  updatedAt: string | null = null;
  outputPath: string | null = null;
  scenePaths: string[] = [];
  error: string | null = null;
  durationS: number | null = null;
  lastSeq = 0;
  /** Events applied here (a task followed from its start has applied === lastSeq: no gaps). */
  applied = 0;
  vram: IVram | null = null;
  preview: IPreview | null = null;
  /** What the run was given (first/last frame, control video...), as its snapshot names it. */
  inputs: IInputs = {};
  /** While queued: where it stands (0 = runs next) and how many run before it; else null. */
  queuePosition: number | null = null;
  queueAhead: number | null = null;
  /** Resuming (docs/resume.md): the latest checkpoint's step a progress event announced, whether
   * the run ended resumable, the task a resumed run continues, a pause that freed the GPU. */
  checkpointStep: number | null = null;
  resumable = false;
  resumedFrom: string | null = null;
  memoryReleased = false;
  /** The post-processing step under way (docs/contract-additions.md "Post-processing"):
   * `interpolate` / `upscale`, with frame pairs or frames done of its total; null outside it. */
  postStep: string | null = null;
  postDone: number | null = null;
  postTotal: number | null = null;
  private _samples: IStepSample[] = [];

  /** " · interpolate 3/8" while a post-processing step runs (the row's meta line), else ''. */
  get postLabel(): string {
    if (this.stage !== 'post_processing' || this.finished || !this.postStep) {
      return '';
    }
    const count = this.postDone !== null && this.postTotal ? ` ${this.postDone}/${this.postTotal}` : '';
    return ` · ${this.postStep}${count}`;
  }

  constructor(id: string) {
    this.id = id;
  }

  get finished(): boolean {
    return FINISHED.has(this.status);
  }

  /** Steps per second over the last few progress events (null until two are seen). */
  get rate(): number | null {
    const s = this._samples;
    if (s.length < 2) {
      return null;
    }
    const first = s[0];
    const last = s[s.length - 1];
    const seconds = (last.at - first.at) / 1000;
    return seconds > 0 && last.step > first.step
      ? (last.step - first.step) / seconds
      : null;
  }

  /** Seconds the run took: the generator's own figure, else first to last event. */
  get duration(): number | null {
    if (this.durationS !== null) {
      return this.durationS;
    }
    if (!this.finished || !this.createdAt || !this.updatedAt) {
      return null;
    }
    const ms = Date.parse(this.updatedAt) - Date.parse(this.createdAt);
    return isFinite(ms) && ms >= 0 ? ms / 1000 : null;
  }

  /** Fill in from a `GET wan-nb/api/tasks` snapshot (newer than anything applied so far). */
  applySnapshot(snap: { [key: string]: any }): boolean {
    const seq = Number(snap.last_seq) || 0;
    if (seq && seq <= this.lastSeq) {
      return this._fillGaps(snap); // older than what events told: only what they did not
    }
    this.kind = snap.kind || this.kind;
    this.status = snap.status || this.status;
    this.queuePosition = this.status === 'queued' ? wholeOrNull(snap.queue_position) : null;
    this.stage = snap.stage ?? this.stage;
    this.progress = Math.max(this.progress, Number(snap.progress) || 0);
    this.message = snap.message || this.message;
    this.eta = snap.estimated_time_remaining ?? null;
    this.step = snap.current_step ?? this.step;
    this.totalSteps = snap.total_steps ?? this.totalSteps;
    this.model = snap.model_type ?? this.model;
    this.prompt = snap.prompt ?? this.prompt;
    this.params = snap.params ?? this.params;
    this.seed = snap.seed ?? this.seed;
    this.storyboardId = snap.storyboard_id ?? this.storyboardId;
    this.createdAt = snap.created_at ?? this.createdAt;
    this.updatedAt = snap.updated_at ?? this.updatedAt;
    this.outputPath = snap.output_path ?? this.outputPath;
    this.scenePaths = snap.scene_videos || this.scenePaths;
    this.error = snap.error ?? this.error;
    this.durationS = snap.duration_s ?? this.durationS;
    this.lastSeq = Math.max(this.lastSeq, seq);
    if (snap.inputs !== undefined) {
      this.inputs = parseInputs(snap.inputs);
    }
    return true;
  }

  private _fillGaps(snap: { [key: string]: any }): boolean {
    const before = [this.prompt, this.model, this.params, this.createdAt];
    let newInputs = false;
    if (snap.inputs !== undefined) {
      // listed once the run stored them: a snapshot no newer than the events may still know more
      const inputs = parseInputs(snap.inputs);
      newInputs = !sameInputs(inputs, this.inputs);
      this.inputs = inputs;
    }
    this.prompt = this.prompt ?? snap.prompt ?? null;
    this.model = this.model ?? snap.model_type ?? null;
    this.params = this.params ?? snap.params ?? null;
    this.seed = this.seed ?? snap.seed ?? null;
    this.storyboardId = this.storyboardId ?? snap.storyboard_id ?? null;
    this.createdAt = snap.created_at || this.createdAt;
    this.kind = snap.kind || this.kind;
    const after = [this.prompt, this.model, this.params, this.createdAt];
    return newInputs || before.some((value, i) => value !== after[i]);
  }

  /** Apply one event frame; false if it was already applied (a replay after a resume). */
  apply(frame: IFrame): boolean {
    const data = frame.data || {};
    if (frame.seq <= this.lastSeq) {
      return false;
    }
    this.lastSeq = frame.seq;
    this.applied++;
    if (data.timestamp) {
      this.createdAt = this.createdAt || data.timestamp;
      this.updatedAt = data.timestamp;
    }
    if (frame.type === 'preview') {
      this.preview = {
        src: `data:${data.mime};base64,${data.data_b64}`,
        step: data.step ?? 0,
        width: data.width ?? 0,
        height: data.height ?? 0
      };
      return !this.finished;
    }
    if (this.finished) {
      return true; // nothing after a terminal event changes the outcome
    }
    switch (frame.type) {
      case 'vram_monitoring':
        this.vram = {
          allocatedMb: data.allocated_mb ?? null,
          totalMb: data.total_mb ?? null,
          percent: data.allocated_percent ?? null,
          level: data.warning_level || 'normal',
          device: data.device_name || ''
        };
        return true;
      case 'storyboard_progress':
        this._applyStoryboard(data);
        return true;
      case 'generation_queued':
        this.status = 'queued';
        this.queuePosition = wholeOrNull(data.queue_position);
        this.queueAhead = wholeOrNull(data.ahead);
        this.message = queuedMessage(this.queuePosition, this.queueAhead);
        return true;
      case 'generation_started':
        // Says what will run, not that it runs: a task waiting behind another stays queued
        // until the worker's generation_stage (as wan_nb/protocol/state.py folds it).
        this._applyStarted(data);
        return true;
    }
    this.status = 'running';
    this.queuePosition = this.queueAhead = null;
    this.memoryReleased = false; // generation_paused says it again while it holds
    switch (frame.type) {
      case 'generation_stage':
        this.stage = data.stage || this.stage;
        this.message = data.stage_message || this.message;
        break;
      case 'detailed_generation_progress':
        this.stage = data.stage || this.stage;
        this._raise(data.progress);
        this.message = data.message || this.message;
        this.eta = data.estimated_time_remaining ?? null;
        this.step = data.current_step ?? this.step;
        this.totalSteps = data.total_steps ?? this.totalSteps;
        this._sample(this.step, data.timestamp);
        this._noteCheckpoint(data.checkpoint);
        this._notePost(data);
        break;
      case 'model_loading_progress':
        this.model = data.model_type || this.model;
        this.message = data.status || this.message;
        break;
      case 'generation_paused':
        this.status = 'paused';
        this.step = data.current_step ?? this.step;
        this.memoryReleased = Boolean(data.release_memory);
        this.message = pausedMessage(data.stage || this.stage, this.memoryReleased);
        break;
      case 'generation_completed':
        this.status = 'completed';
        this.stage = 'completed';
        this.progress = 100;
        this.eta = 0;
        this.outputPath = data.output_path ?? this.outputPath;
        this.durationS = data.duration_s ?? this.durationS;
        this.seed = data.seed ?? this.seed; // a seed left to chance is known only now
        this.message = 'Generation complete';
        break;
      case 'generation_failed':
        this.memoryReleased = false;
        this.status = data.error_type === 'ProducerLost' ? 'lost' : 'failed';
        this.stage = 'failed';
        this.eta = null;
        this.error = data.error || null;
        this.message = data.error || 'Generation failed';
        if (this.status === 'lost' && isWholePositive(data.checkpoint_step)) {
          // one the server found in the run folder (a SIGTERM's, which no event announced)
          this.checkpointStep = data.checkpoint_step;
        }
        if (this.status === 'lost' && this.checkpointStep) {
          // its process died after a checkpoint: resume_run finishes it from there
          this.status = 'interrupted';
          this._endResumable(this.checkpointStep);
        }
        break;
      case 'generation_cancelled':
        this.memoryReleased = false;
        this.status = 'cancelled';
        this.stage = 'cancelled';
        this.eta = null;
        this.step = data.current_step ?? this.step;
        this.message = 'Generation cancelled';
        if (data.resumable && isWholePositive(data.checkpoint_step)) {
          // stop_after=k, cancel(keep=True)
          this.status = 'stopped';
          this.totalSteps = data.total_steps ?? this.totalSteps;
          this._endResumable(data.checkpoint_step);
        }
        break;
    }
    return true;
  }

  private _applyStarted(data: { [key: string]: any }): void {
    const params = data.params || {};
    this.params = params;
    this.model = data.model_type ?? this.model;
    this.prompt = params.prompt ?? this.prompt;
    this.seed = params.seed ?? this.seed;
    this.storyboardId = params.storyboard_id ?? this.storyboardId;
    this.totalSteps = params.steps ?? this.totalSteps;
    this.eta = data.estimated_duration ?? this.eta;
    this.stage = this.stage || 'initializing';
    if (typeof data.resumed_from === 'string') {
      this.resumedFrom = data.resumed_from;
    }
  }

  private _notePost(data: { [key: string]: any }): void {
    const post = this.stage === 'post_processing' && typeof data.post_step === 'string';
    this.postStep = post ? data.post_step : null;
    this.postDone = post ? wholeOrNull(data.post_done) : null;
    this.postTotal = post && isWholePositive(data.post_total) ? data.post_total : null;
  }

  private _noteCheckpoint(checkpoint: any): void {
    if (checkpoint && checkpoint.saved && isWholePositive(checkpoint.step)) {
      this.checkpointStep = checkpoint.step;
    }
  }

  private _endResumable(step: number): void {
    this.resumable = true;
    this.checkpointStep = this.step = step;
    this.message = resumableMessage(this.status, step, this.totalSteps);
  }

  private _applyStoryboard(data: { [key: string]: any }): void {
    this.kind = 'storyboard';
    this.stage = data.step || this.stage;
    this._raise(data.progress);
    this.message = data.message || this.message;
    const inner = data.data || {};
    if (Array.isArray(inner.scene_videos) && inner.scene_videos.length) {
      this.scenePaths = inner.scene_videos.map(String);
    }
    if (inner.final_video_path) {
      this.outputPath = String(inner.final_video_path);
    }
    if (inner.prompt && !this.prompt) {
      this.prompt = inner.prompt;
    }
    if (data.status === 'failed' || data.status === 'cancelled') {
      this.status = data.status;
      this.error = data.message || null;
    } else if (data.step === 'complete') {
      this.status = 'completed';
      this.progress = 100;
    } else {
      this.status = 'running';
    }
  }

  private _raise(value: unknown): void {
    if (typeof value === 'number' && isFinite(value)) {
      this.progress = Math.max(this.progress, Math.min(100, value));
    }
  }

  private _sample(step: number | null, timestamp: string | undefined): void {
    const at = timestamp ? Date.parse(timestamp) : NaN;
    if (step === null || !isFinite(at)) {
      return;
    }
    const s = this._samples;
    if (s.length && step < s[s.length - 1].step) {
      s.length = 0; // a second pass (two-expert models restart counting): measure afresh
    }
    s.push({ step, at });
    if (s.length > RATE_WINDOW) {
      s.shift();
    }
  }
}

function isWholePositive(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/** "Stopped at step 3/8: resumable", word for word as wan_nb.protocol.state.resumable_message. */
export function resumableMessage(status: string, step: number, total: number | null): string {
  const word = status.charAt(0).toUpperCase() + status.slice(1);
  return `${word} at step ${step}/${total ?? '?'}: resumable`;
}

/** "Paused during generating · memory released", as wan_nb.protocol.state.paused_message. */
export function pausedMessage(stage: string | null, released: boolean): string {
  return `Paused during ${stage}` + (released ? ' · memory released' : '');
}

function wholeOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : null;
}

/** What a waiting task's message reads, word for word as the server's snapshot has it
 * (wan_nb.protocol.state.queued_message): "Queued (#2): 1 task ahead". */
export function queuedMessage(position: number | null, ahead: number | null): string {
  const text = queuedLabel(position);
  return ahead ? `${text}: ${ahead} task${ahead !== 1 ? 's' : ''} ahead` : text;
}

/** "Queued (#1)" for the task that runs next (position 0), "Queued" where it is not known. */
export function queuedLabel(position: number | null): string {
  return position === null ? 'Queued' : `Queued (#${position + 1})`;
}

const RANK: { [status: string]: number } = {
  running: 0,
  paused: 0,
  queued: 1
};

/** Running first, then queued (in the order they will run), then finished, newest first. */
export function compareTasks(a: TaskState, b: TaskState): number {
  const ra = RANK[a.status] ?? 2;
  const rb = RANK[b.status] ?? 2;
  if (ra !== rb) {
    return ra - rb;
  }
  const ca = a.createdAt || '';
  const cb = b.createdAt || '';
  if (ra === 1) {
    // In run order: by queue position where both know it, else by when they were queued.
    const pa = a.queuePosition;
    const pb = b.queuePosition;
    if (pa !== null && pb !== null && pa !== pb) {
      return pa - pb;
    }
    return ca < cb ? -1 : ca > cb ? 1 : 0;
  }
  return ca < cb ? 1 : ca > cb ? -1 : 0;
}
