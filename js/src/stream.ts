/**
 * The all-tasks event stream (`GET wan-nb/api/events`), read with `fetch` rather than
 * `EventSource`: requests go through `ServerConnection.makeRequest`, so they carry the page's
 * own token header exactly as every other Lab request does. On a dropped connection it
 * reconnects with the last id it saw (`Last-Event-ID`), and the server sends what was missed.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'missing';

export interface IStreamHandlers {
  /** One SSE event: its name (the event type), its opaque id and its parsed JSON data. */
  event(type: string, id: string | null, data: any): void;
  /** Connection state changes; `open` is true once the server answered 200. */
  state(state: StreamState): void;
  /** Called after every (re)connection is established, before its first event. */
  opened?(resumed: boolean): void;
}

const MAX_BACKOFF_MS = 10_000;

export class EventStream {
  private _lastId: string | null = null;
  private _abort: AbortController | null = null;
  private _stopped = false;
  private _backoff = 500;

  constructor(
    private readonly _settings: ServerConnection.ISettings,
    private readonly _handlers: IStreamHandlers,
    private readonly _query = 'previews=1'
  ) {}

  get lastId(): string | null {
    return this._lastId;
  }

  start(): void {
    this._stopped = false;
    void this._loop();
  }

  stop(): void {
    this._stopped = true;
    this._abort?.abort();
  }

  private async _loop(): Promise<void> {
    let first = true;
    while (!this._stopped) {
      this._handlers.state(first ? 'connecting' : 'reconnecting');
      let ended: 'missing' | 'closed' = 'closed';
      try {
        ended = await this._readOnce();
      } catch (err) {
        if (this._stopped) {
          return;
        }
        console.debug('wan_nb: event stream dropped', err);
      }
      if (ended === 'missing') {
        this._handlers.state('missing');
        return;
      }
      first = false;
      await new Promise(resolve => setTimeout(resolve, this._backoff));
      this._backoff = Math.min(MAX_BACKOFF_MS, this._backoff * 2);
    }
  }

  private async _readOnce(): Promise<'missing' | 'closed'> {
    const url = URLExt.join(this._settings.baseUrl, 'wan-nb/api/events') + '?' + this._query;
    const headers: { [key: string]: string } = { Accept: 'text/event-stream' };
    if (this._lastId) {
      headers['Last-Event-ID'] = this._lastId;
    }
    this._abort = new AbortController();
    const response = await ServerConnection.makeRequest(
      url,
      { headers, signal: this._abort.signal, cache: 'no-store' },
      this._settings
    );
    if (response.status === 404) {
      return 'missing';
    }
    if (!response.ok || !response.body) {
      throw new Error(`event stream answered ${response.status}`);
    }
    this._handlers.opened?.(this._lastId !== null);
    this._handlers.state('live');
    this._backoff = 500;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return 'closed';
      }
      buffer += value;
      let cut: number;
      while ((cut = blockEnd(buffer)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^(\r?\n){1,2}/, '');
        this._dispatch(block);
      }
    }
  }

  private _dispatch(block: string): void {
    let type = 'message';
    let id: string | null = null;
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(':')) {
        continue; // blank, or a heartbeat comment
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') {
        type = value;
      } else if (field === 'id') {
        id = value;
      } else if (field === 'data') {
        data.push(value);
      }
    }
    if (id !== null) {
      this._lastId = id;
    }
    if (!data.length) {
      return;
    }
    let parsed: any;
    try {
      parsed = JSON.parse(data.join('\n'));
    } catch {
      return;
    }
    this._handlers.event(type, id, parsed);
  }
}

/** Index where the first complete SSE block ends (its blank line), or -1. */
function blockEnd(buffer: string): number {
  const lf = buffer.indexOf('\n\n');
  const crlf = buffer.indexOf('\r\n\r\n');
  if (lf < 0) {
    return crlf;
  }
  return crlf < 0 ? lf : Math.min(lf, crlf);
}
