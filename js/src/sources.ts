/**
 * "Runs from": the folders the server lists finished runs from, and why (configured, a live
 * producer's, remembered from before), with a button to forget a remembered one. Without it a
 * sidebar full of old test runs gave no clue where they came from or how to drop them.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IRunsSource {
  path: string;
  source: 'configured' | 'announced' | 'remembered' | string;
}

export class SourcesView {
  readonly node: HTMLElement;
  private _list: HTMLElement;

  constructor(
    private readonly _settings: ServerConnection.ISettings,
    private readonly _onForget: () => void
  ) {
    this.node = document.createElement('details');
    this.node.className = 'wan-nb-Sources';
    const summary = document.createElement('summary');
    summary.textContent = 'Runs from';
    this._list = document.createElement('ul');
    this._list.className = 'wan-nb-Sources-list';
    this.node.append(summary, this._list);
    this.node.hidden = true;
  }

  private _url(): string {
    return URLExt.join(this._settings.baseUrl, 'wan-nb/api/runs-dirs');
  }

  /** Ask the server again (on start and after a reconnection). */
  async refresh(): Promise<void> {
    let sources: IRunsSource[] = [];
    try {
      const response = await ServerConnection.makeRequest(this._url(), {}, this._settings);
      if (!response.ok) {
        return;
      }
      sources = (await response.json()).runs_dirs || [];
    } catch {
      return; // no server extension: the sidebar already says so
    }
    this._list.replaceChildren(...sources.map(source => this._item(source)));
    this.node.hidden = sources.length === 0;
    this.node.querySelector('summary')!.textContent = `Runs from ${sources.length} folder${
      sources.length === 1 ? '' : 's'
    }`;
  }

  private _item(source: IRunsSource): HTMLElement {
    const item = document.createElement('li');
    item.className = 'wan-nb-Sources-item';
    item.dataset.source = source.source;
    const path = document.createElement('code');
    path.textContent = source.path;
    path.title = source.path;
    const why = document.createElement('span');
    why.className = 'wan-nb-Sources-why';
    why.textContent = source.source;
    item.append(path, why);
    if (source.source === 'remembered') {
      const forget = document.createElement('button');
      forget.type = 'button';
      forget.className = 'wan-nb-Button wan-nb-Sources-forget';
      forget.textContent = 'Forget';
      forget.title = 'Stop listing runs from this folder (its files stay)';
      forget.setAttribute('aria-label', `Forget ${source.path}`);
      forget.addEventListener('click', () => void this._forget(source.path));
      item.append(forget);
    }
    return item;
  }

  private async _forget(path: string): Promise<void> {
    const url = this._url() + URLExt.objectToQueryString({ path });
    const response = await ServerConnection.makeRequest(url, { method: 'DELETE' }, this._settings);
    if (response.ok) {
      await this.refresh();
      this._onForget();
    }
  }
}
