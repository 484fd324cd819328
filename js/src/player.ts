/** A main-area video player: HTML5 <video> (the server answers Range requests, so seeking
 * works without downloading the whole file) and a Download link; beside the video, the
 * task's inputs (first/last frame, reference images, a control or pose video that plays,
 * pauses and seeks with the result). */

import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IInputs, inputLabel, sameInputs } from './inputs';

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
  readonly inputsNode: HTMLElement;
  private _inputs: IInputs = {};

  constructor(url: string, title: string, fileName: string, inputs: IInputs = {}) {
    super();
    this.addClass('wan-nb-Player');
    const src = authorizedUrl(url);
    this.video = document.createElement('video');
    this.video.controls = true;
    this.video.loop = true;
    this.video.preload = 'auto';
    this.video.src = src;
    this.video.setAttribute('aria-label', title);
    this.inputsNode = document.createElement('div');
    this.inputsNode.className = 'wan-nb-Player-inputs';
    this.inputsNode.setAttribute('aria-label', 'Inputs');
    this.inputsNode.hidden = true;
    const stage = document.createElement('div');
    stage.className = 'wan-nb-Player-stage';
    stage.append(this.inputsNode, this.video);
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
    this.node.append(stage, bar);
    // The input videos follow the result: they steer it frame by frame, so they play together.
    this.video.addEventListener('play', () => {
      this._follow();
      this._inputVideos().forEach(v => void v.play().catch(() => undefined));
    });
    this.video.addEventListener('pause', () => this._inputVideos().forEach(v => v.pause()));
    this.video.addEventListener('seeked', () => this._follow());
    this.setInputs(inputs);
  }

  /** Show `inputs` beside the video (nothing is reloaded when they did not change). */
  setInputs(inputs: IInputs): void {
    if (sameInputs(inputs, this._inputs)) {
      return;
    }
    this._inputs = inputs;
    const names = Object.keys(inputs);
    this.inputsNode.replaceChildren(...names.map(name => this._input(name, names)));
    this.inputsNode.hidden = names.length === 0;
  }

  private _input(name: string, names: string[]): HTMLElement {
    const { kind, urls } = this._inputs[name];
    const figure = document.createElement('figure');
    figure.className = 'wan-nb-Player-input';
    figure.dataset.input = name;
    figure.dataset.kind = kind;
    const label = inputLabel(name, names);
    for (const url of urls) {
      let media: HTMLImageElement | HTMLVideoElement;
      if (kind === 'video') {
        media = document.createElement('video');
        media.muted = true; // muted autoplay is allowed by every browser
        media.loop = true;
        media.autoplay = true;
        media.playsInline = true;
        media.preload = 'auto';
      } else {
        media = document.createElement('img');
        media.alt = label;
      }
      media.src = authorizedUrl(url);
      media.title = label;
      figure.append(media);
    }
    const caption = document.createElement('figcaption');
    caption.textContent = label;
    figure.append(caption);
    return figure;
  }

  private _inputVideos(): HTMLVideoElement[] {
    return Array.from(this.inputsNode.querySelectorAll('video'));
  }

  private _follow(): void {
    for (const v of this._inputVideos()) {
      if (isFinite(v.duration) && v.duration > 0) {
        v.currentTime = Math.min(this.video.currentTime, v.duration);
      }
    }
  }
}

export function playerWidget(
  url: string,
  title: string,
  fileName: string,
  inputs: IInputs = {}
): MainAreaWidget<VideoPlayer> {
  const content = new VideoPlayer(url, title, fileName, inputs);
  const widget = new MainAreaWidget({ content });
  widget.title.label = title.length > 30 ? title.slice(0, 27) + '...' : title;
  widget.title.caption = title;
  widget.title.closable = true;
  return widget;
}
