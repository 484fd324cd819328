/** The "Wan generations" sidebar: every task of the server, live, in display order. */

import { Widget } from '@lumino/widgets';

import { NotifySetting } from './notify';
import { IRowActions, RowView } from './row';
import { SourcesView } from './sources';
import { PAGE_SIZE, TaskStore } from './store';

const MISSING_TEXT =
  'The wan_nb server extension is not running on this Jupyter server, so generations ' +
  'cannot be listed here. Install wan_nb in the environment that runs Jupyter (it enables ' +
  'itself), or run "jupyter server extension enable wan_nb", then restart Jupyter.';

const EMPTY_TEXT =
  'No generations yet. Start one in a notebook (gen.generate(...)), a script or a terminal ' +
  '(wan-nb generate "..."): it shows up here while it runs.';

export class GenerationsSidebar extends Widget {
  private _rows = new Map<string, RowView>();
  private _list: HTMLUListElement;
  private _notice: HTMLElement;
  private _state: HTMLElement;
  private _more: HTMLButtonElement;
  private _visible = PAGE_SIZE;
  private _ticker = 0;
  private _sources: SourcesView;
  /** A task to bring into view once its row exists (the run a Resume started). */
  private _follow: string | null = null;

  constructor(
    private readonly _store: TaskStore,
    private readonly _actions: IRowActions,
    notify: NotifySetting
  ) {
    super();
    this.addClass('wan-nb-Sidebar');
    const header = document.createElement('div');
    header.className = 'wan-nb-Sidebar-header';
    const title = document.createElement('h2');
    title.textContent = 'Wan generations';
    this._state = document.createElement('span');
    this._state.className = 'wan-nb-Sidebar-state';
    this._state.setAttribute('role', 'status');
    header.append(title, this._state);
    this._notice = document.createElement('p');
    this._notice.className = 'wan-nb-Sidebar-notice';
    this._list = document.createElement('ul');
    this._list.className = 'wan-nb-Sidebar-list';
    this._list.setAttribute('aria-label', 'Wan generations');
    this._more = document.createElement('button');
    this._more.type = 'button';
    this._more.className = 'wan-nb-Button wan-nb-more';
    this._more.addEventListener('click', () => this._showMore());
    this._sources = new SourcesView(_store.settings, () => void _store.refresh());
    const options = document.createElement('div');
    options.className = 'wan-nb-Sidebar-options';
    options.append(notify.checkbox());
    this.node.append(header, options, this._sources.node, this._notice, this._list, this._more);
    void this._sources.refresh();
    _store.changed.connect(this._onChanged, this);
    this._render(new Set(['']));
    // Time left counts down between events (decode and save send none): running rows redraw.
    this._ticker = window.setInterval(() => this._tick(), 1000);
  }

  dispose(): void {
    window.clearInterval(this._ticker);
    this._store.changed.disconnect(this._onChanged, this);
    super.dispose();
  }

  /** The row of a task, if it is shown (for the actions' feedback). */
  row(taskId: string): RowView | undefined {
    return this._rows.get(taskId);
  }

  /** Show `taskId`'s row (scrolled to, marked) now or as soon as it is listed. */
  follow(taskId: string): void {
    this._follow = taskId;
    if (!this._rows.has(taskId)) {
      const at = this._store.ordered().findIndex(t => t.id === taskId);
      if (at >= this._visible) {
        this._visible = at + 1; // an old run resumed from far down: its continuation is on top anyway
      }
      this._arrange();
    }
    this._bringFollowed();
  }

  private _bringFollowed(): void {
    const row = this._follow ? this._rows.get(this._follow) : undefined;
    if (!row) {
      return;
    }
    this._follow = null;
    for (const node of this._list.querySelectorAll('.wan-nb-Row[data-followed]')) {
      delete (node as HTMLElement).dataset.followed;
    }
    row.node.dataset.followed = 'true';
    row.node.scrollIntoView({ block: 'nearest' });
  }

  private _tick(): void {
    const running = [...this._rows.values()].filter(row => row.status === 'running');
    for (const row of running) {
      row.update();
    }
  }

  private _onChanged(_: TaskStore, dirty: ReadonlySet<string>): void {
    this._render(dirty);
  }

  private _render(dirty: ReadonlySet<string>): void {
    const store = this._store;
    let reorder = dirty.has('');
    for (const id of dirty) {
      const row = this._rows.get(id);
      if (!row) {
        reorder = reorder || (id !== '' && store.tasks.has(id));
        continue;
      }
      const [status, position] = [row.status, row.queuePosition];
      row.update();
      reorder = reorder || row.status !== status || row.queuePosition !== position;
    }
    if (reorder) {
      this._arrange();
    }
    this._bringFollowed();
    this._renderHeader();
  }

  /** Rows in display order, the first `_visible` of them in the DOM; nodes move only if needed. */
  private _arrange(): void {
    const ordered = this._store.ordered();
    const shown = ordered.slice(0, this._visible);
    const keep = new Set(shown.map(t => t.id));
    for (const [id, row] of this._rows) {
      if (!keep.has(id)) {
        row.node.remove();
        this._rows.delete(id);
      }
    }
    let cursor: ChildNode | null = this._list.firstChild;
    for (const task of shown) {
      let row = this._rows.get(task.id);
      if (!row) {
        row = new RowView(task, this._actions, this._store.notes(task.id));
        this._rows.set(task.id, row);
      }
      if (row.node !== cursor) {
        this._list.insertBefore(row.node, cursor);
      } else {
        cursor = cursor.nextSibling;
      }
    }
    const hidden = ordered.length - shown.length;
    const more = hidden > 0 || this._store.moreOnServer;
    this._more.hidden = !more;
    this._more.textContent = hidden > 0 ? `Show ${Math.min(hidden, PAGE_SIZE)} more` : 'Load older runs';
  }

  private _showMore(): void {
    const hidden = this._store.tasks.size - this._visible;
    this._visible += PAGE_SIZE;
    if (hidden <= 0 && this._store.moreOnServer) {
      void this._store.loadMore();
    }
    this._arrange();
  }

  private _renderHeader(): void {
    const store = this._store;
    this.node.dataset.availability = store.availability;
    let notice = '';
    if (store.availability === 'missing') {
      notice = MISSING_TEXT;
    } else if (store.availability === 'error') {
      notice = `Cannot list generations: ${store.errorText}`;
    } else if (store.availability === 'ready' && store.tasks.size === 0) {
      notice = EMPTY_TEXT;
    }
    if (this._notice.textContent !== notice) {
      this._notice.textContent = notice;
    }
    this._notice.hidden = !notice;
    const { running, paused, queued } = store.summary();
    let state = '';
    if (store.availability === 'missing') {
      state = 'unavailable';
    } else if (store.streamState === 'reconnecting' || store.streamState === 'connecting') {
      state = store.streamState === 'connecting' ? 'connecting…' : 'reconnecting…';
    } else {
      const parts = [
        running ? `${running} running` : '',
        paused ? `${paused} paused` : '',
        queued ? `${queued} queued` : '',
        `${store.tasks.size} tasks`
      ];
      state = parts.filter(part => part).join(' · ');
    }
    if (this._state.textContent !== state) {
      this._state.textContent = state;
    }
    this._state.dataset.stream = store.streamState;
  }
}
