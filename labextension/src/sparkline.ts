import { IWindow } from './api';
import { el, setAttr, setText } from './dom';

const SVG = 'http://www.w3.org/2000/svg';
export const WINDOW_S = 10;
export const WINDOWS = 30; // the server keeps the last five minutes
const WIDTH = WINDOWS * 10;
const HEIGHT = 40;

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {}
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, value);
  }
  return node;
}

/** The window index (0 = five minutes ago, WINDOWS - 1 = now) of each window. */
function byIndex(history: IWindow[], now: number): Map<number, IWindow> {
  const last = Math.floor(now / WINDOW_S) * WINDOW_S;
  const found = new Map<number, IWindow>();
  for (const w of history) {
    const index = WINDOWS - 1 - Math.round((last - w.t) / WINDOW_S);
    if (index >= 0 && index < WINDOWS) {
      found.set(index, w);
    }
  }
  return found;
}

/**
 * A version's last five minutes, drawn small: requests per second (bars, failures in
 * the error colour) over p50 and p95 latency (lines). Its elements are made once and
 * only their attributes change with each poll.
 */
export class Sparkline {
  readonly node = el('div', 'jp-nbdeploy-Spark');

  constructor() {
    this._svg = svg('svg', {
      viewBox: `0 0 ${WIDTH} ${HEIGHT * 2 + 4}`,
      preserveAspectRatio: 'none',
      role: 'img'
    });
    this._svg.appendChild(this._title);
    for (let i = 0; i < WINDOWS; i++) {
      const ok = svg('rect', {
        class: 'jp-nbdeploy-Spark-ok',
        x: `${i * 10 + 1}`,
        width: '8'
      });
      const bad = svg('rect', {
        class: 'jp-nbdeploy-Spark-bad',
        x: `${i * 10 + 1}`,
        width: '8'
      });
      this._svg.append(ok, bad);
      this._bars.push([ok, bad]);
    }
    this._svg.append(
      svg('line', {
        class: 'jp-nbdeploy-Spark-axis',
        x1: '0',
        x2: `${WIDTH}`,
        y1: `${HEIGHT + 2}`,
        y2: `${HEIGHT + 2}`
      }),
      this._p95,
      this._p50
    );
    this._p50.setAttribute('class', 'jp-nbdeploy-Spark-p50');
    this._p95.setAttribute('class', 'jp-nbdeploy-Spark-p95');
    this.node.append(this._svg, this._caption);
  }

  update(history: IWindow[], now: number): void {
    const windows = byIndex(history, now);
    let peak = 0;
    let slowest = 0;
    let requests = 0;
    let failures = 0;
    for (const w of windows.values()) {
      peak = Math.max(peak, (w.requests + w.failures) / WINDOW_S);
      slowest = Math.max(slowest, w.p95_ms ?? 0, w.p50_ms ?? 0);
      requests += w.requests;
      failures += w.failures;
    }
    for (let i = 0; i < WINDOWS; i++) {
      const w = windows.get(i);
      const [ok, bad] = this._bars[i];
      const all = w ? (w.requests + w.failures) / WINDOW_S : 0;
      const failed = w ? w.failures / WINDOW_S : 0;
      const scale = peak > 0 ? HEIGHT / peak : 0;
      const total = all * scale;
      const red = failed * scale;
      setAttr(ok, 'y', `${HEIGHT - total}`);
      setAttr(ok, 'height', `${total - red}`);
      setAttr(bad, 'y', `${HEIGHT - red}`);
      setAttr(bad, 'height', `${red}`);
    }
    const top = HEIGHT + 4;
    const line = (pick: (w: IWindow) => number | null): string => {
      const parts: string[] = [];
      let drawing = false;
      for (let i = 0; i < WINDOWS; i++) {
        const w = windows.get(i);
        const value = w ? pick(w) : null;
        if (value === null || slowest <= 0) {
          drawing = false;
          continue;
        }
        const y = top + HEIGHT - (value / slowest) * (HEIGHT - 2);
        // A window alone still shows: a short stroke with round caps.
        const x = i * 10 + 5;
        parts.push(
          drawing ? `L${x} ${y.toFixed(1)}` : `M${x - 2} ${y.toFixed(1)} h4`
        );
        drawing = true;
      }
      return parts.join(' ');
    };
    setAttr(
      this._p50,
      'd',
      line(w => w.p50_ms)
    );
    setAttr(
      this._p95,
      'd',
      line(w => w.p95_ms)
    );
    setAttr(this.node, 'data-requests', String(requests));
    setAttr(this.node, 'data-failures', String(failures));
    const summary =
      requests + failures
        ? `last 5 min: ${requests} answered, ${failures} failed; peak ${peak.toPrecision(2)}/s; slowest p95 ${slowest.toPrecision(2)} ms`
        : 'no requests in the last 5 minutes';
    setText(this._title, summary);
    setText(
      this._caption,
      requests + failures
        ? `last 5 min · peak ${peak.toPrecision(2)} req/s · p95 max ${slowest.toPrecision(2)} ms`
        : 'last 5 min · no requests'
    );
  }

  private _svg: SVGSVGElement;
  private _title = svg('title');
  private _bars: [SVGRectElement, SVGRectElement][] = [];
  private _p50 = svg('path');
  private _p95 = svg('path');
  private _caption = el('div', 'jp-nbdeploy-Spark-caption');
}
