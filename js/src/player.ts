/** A main-area video player: HTML5 <video> (the server answers Range requests, so seeking
 * works without downloading the whole file) and a Download link. */

import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

/** The file URL as Lab's own downloads build it: the login cookie authenticates the
 * request, and `_xsrf` is added the way the contents service adds it to download links. */
export function authorizedUrl(url: string): string {
  const match = document.cookie.match('\\b_xsrf=([^;]*)\\b');
  if (!match) {
    return url;
  }
  const full = new URL(url, window.location.href);
  full.searchParams.append('_xsrf', match[1]);
  return full.pathname + full.search;
}

export class VideoPlayer extends Widget {
  readonly video: HTMLVideoElement;

  constructor(url: string, title: string, fileName: string) {
    super();
    this.addClass('wan-nb-Player');
    const src = authorizedUrl(url);
    this.video = document.createElement('video');
    this.video.controls = true;
    this.video.loop = true;
    this.video.preload = 'auto';
    this.video.src = src;
    this.video.setAttribute('aria-label', title);
    const bar = document.createElement('div');
    bar.className = 'wan-nb-Player-bar';
    const caption = document.createElement('span');
    caption.className = 'wan-nb-Player-caption';
    caption.textContent = title;
    caption.title = title;
    const download = document.createElement('a');
    download.className = 'wan-nb-Button wan-nb-download';
    download.href = src;
    download.download = fileName;
    download.textContent = 'Download';
    bar.append(caption, download);
    this.node.append(this.video, bar);
  }
}

export function playerWidget(url: string, title: string, fileName: string): MainAreaWidget<VideoPlayer> {
  const content = new VideoPlayer(url, title, fileName);
  const widget = new MainAreaWidget({ content });
  widget.title.label = title.length > 30 ? title.slice(0, 27) + '...' : title;
  widget.title.caption = title;
  widget.title.closable = true;
  return widget;
}
