/**
 * One task in the sidebar. Its DOM is built once and then patched field by field, and only
 * where a value changed: a busy row costs a few text writes per tick, never a rebuild.
 */

import { clock, megabytes, percent, rate, stageLabel } from './format';
import { TaskState } from './state';

export interface IRowActions {
  cancel(task: TaskState): void;
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
  private _scenes: HTMLElement;
  private _cancel: HTMLButtonElement;
  private _play: HTMLButtonElement;
  private _copy: HTMLButtonElement;
  private _folder: HTMLButtonElement;
  private _previewSrc = '';
  private _sceneCount = -1;

  constructor(
    readonly task: TaskState,
    private readonly _actions: IRowActions
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
    this._scenes = el('div', 'wan-nb-Row-scenes', row);
    const actions = el('div', 'wan-nb-Row-actions', row);
    this._cancel = this._button(actions, 'Cancel', 'wan-nb-cancel', () => this._onCancel());
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
    this.status = t.status;
    this.node.dataset.status = t.status;
    this.node.dataset.kind = t.kind;
    this.node.dataset.lastSeq = String(t.lastSeq);
    this.node.dataset.events = String(t.applied);
    const prompt = t.prompt || (t.kind === 'storyboard' ? `Storyboard ${t.id}` : t.id);
    setText(this._prompt, prompt);
    this._prompt.title = prompt;
    const stage = t.stage && !t.finished ? ` · ${stageLabel(t.stage)}` : '';
    const kind = t.kind === 'storyboard' ? 'storyboard' : t.model || 'model ?';
    const scene = t.storyboardId ? ' · scene' : '';
    setText(this._meta, `${kind}${scene} · ${t.status}${stage}`);

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
    } else if (live || t.progress) {
      steps = percent(t.progress);
    }
    setText(this._steps, steps);
    setText(this._eta, live && t.eta !== null ? `${clock(t.eta)} left` : '');
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
    setText(this._error, t.status === 'failed' || t.status === 'lost' ? t.error || t.message : '');
    show(this._error, !!this._error.textContent);

    if (t.preview && t.preview.src !== this._previewSrc) {
      this._previewSrc = t.preview.src;
      this._thumb.src = t.preview.src;
    }
    show(this._thumb, !!t.preview);

    this._updateScenes();
    show(this._cancel, live);
    show(this._play, t.status === 'completed' && !!t.outputPath && t.kind !== 'storyboard');
    show(this._folder, this._actions.folderOf(t) !== null);
    const label = prompt.length > 60 ? prompt.slice(0, 57) + '...' : prompt;
    this._cancel.setAttribute('aria-label', `Cancel: ${label}`);
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

  /** After the server refused: the button comes back, the reason shows in the row. */
  cancelFailed(reason: string): void {
    this._cancel.disabled = false;
    setText(this._cancel, 'Cancel');
    setText(this._error, reason);
    show(this._error, true);
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
