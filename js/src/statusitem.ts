/** The status-bar item: "Wan: 2 running · 43 % · 1:20 left" and a memory sparkline. */

import { Widget } from '@lumino/widgets';

import { clock } from './format';
import { TaskStore } from './store';

const SVG = 'http://www.w3.org/2000/svg';
const SPARK_W = 40;
const SPARK_H = 14;

export class WanStatusItem extends Widget {
  private _text: HTMLElement;
  private _line: SVGPolylineElement;

  constructor(
    private readonly _store: TaskStore,
    onClick: () => void
  ) {
    super({ node: document.createElement('button') });
    this.addClass('wan-nb-Status');
    (this.node as HTMLButtonElement).type = 'button';
    this.node.title = 'Show the Wan generations sidebar';
    this._text = document.createElement('span');
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'wan-nb-Status-spark');
    svg.setAttribute('width', String(SPARK_W));
    svg.setAttribute('height', String(SPARK_H));
    svg.setAttribute('viewBox', `0 0 ${SPARK_W} ${SPARK_H}`);
    svg.setAttribute('aria-hidden', 'true');
    this._line = document.createElementNS(SVG, 'polyline');
    svg.appendChild(this._line);
    this.node.append(this._text, svg);
    this.node.addEventListener('click', onClick);
    _store.changed.connect(this._update, this);
    this._update();
  }

  get running(): number {
    return this._store.summary().running;
  }

  private _update(): void {
    const { running, paused, progress, eta } = this._store.summary();
    const parts = [`Wan: ${running} running`];
    if (paused) {
      parts.push(`${paused} paused`);
    }
    if (progress !== null) {
      parts.push(`${Math.round(progress)} %`);
    }
    if (eta !== null && eta > 0) {
      parts.push(`${clock(eta)} left`);
    }
    const text = parts.join(' · ');
    if (this._text.textContent !== text) {
      this._text.textContent = text;
      this.node.setAttribute('aria-label', `${text}. Show the Wan generations sidebar`);
    }
    const history = this._store.vramHistory;
    const points = history.map((value, i) => {
      const x = history.length > 1 ? (i / (history.length - 1)) * SPARK_W : SPARK_W;
      const y = SPARK_H - 1 - (Math.max(0, Math.min(100, value)) / 100) * (SPARK_H - 2);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    this._line.setAttribute('points', points.join(' '));
    this.node.dataset.running = String(running);
  }
}
