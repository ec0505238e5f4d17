import { IVersion } from './api';
import { button, copyButton, el, ms, setAttr, setText, short } from './dom';
import { Sparkline } from './sparkline';

/**
 * One version, live: its role and share, requests per second, p50/p95 latency and
 * errors, its last five minutes, and Try it / copy buttons. Built once; each poll only
 * changes texts and attributes.
 */
export class VersionCard {
  readonly node = el('div', 'jp-nbdeploy-Version');

  constructor(version: IVersion, tryIt: (version: number) => void) {
    this._data = version;
    this.node.dataset.version = String(version.version);
    const head = el('div', 'jp-nbdeploy-Version-head');
    head.append(this._name, this._role, this._share);
    const stats = el('div', 'jp-nbdeploy-Stats');
    for (const [label, value, title] of [
      ['req/s', this._rate, 'requests per second over the last minute'],
      ['errors', this._errors, 'failed requests since it was loaded'],
      ['p50', this._p50, 'median latency (ms) over recent requests'],
      ['p95', this._p95, '95th percentile latency (ms) over recent requests']
    ] as [string, HTMLElement, string][]) {
      const cell = el('div', 'jp-nbdeploy-Stat');
      cell.title = title;
      cell.append(el('span', 'jp-nbdeploy-Stat-label', label), value);
      stats.appendChild(cell);
    }
    const copy = (kind: 'python' | 'curl') => () =>
      this._data.snippets[kind] ?? '';
    this._python = copyButton(
      'Python',
      'copy-python',
      copy('python'),
      'Copy a tritonclient call to this version that runs as pasted'
    );
    this._curl = copyButton(
      'curl',
      'copy-curl',
      copy('curl'),
      'Copy a curl line that sends one request to this version'
    );
    this._try = button(
      'Try it',
      'try',
      () => tryIt(this._data.version),
      'Send the example (or your own request, or a picture) to this version'
    );
    const buttons = el('div', 'jp-nbdeploy-Version-buttons');
    buttons.append(this._try);
    const copies = el('div', 'jp-nbdeploy-Version-buttons');
    copies.append(this._python, this._curl);
    this.node.append(
      head,
      stats,
      this._reason,
      this._spark.node,
      buttons,
      copies
    );
  }

  update(version: IVersion, now: number): void {
    this._data = version;
    setText(this._name, `v${version.version}`);
    setText(this._role, version.role);
    setAttr(this.node, 'data-role', version.role.replace(' ', '-'));
    setText(this._share, `${short(version.traffic)}%`);
    setText(this._rate, short(version.requests_per_s));
    setText(this._errors, short(version.failures));
    this._errors.classList.toggle('jp-mod-error', version.failures > 0);
    setText(this._p50, ms(version.p50_ms));
    setText(this._p95, ms(version.p95_ms));
    setText(this._reason, version.ready ? '' : version.reason);
    setAttr(this.node, 'data-requests', String(version.requests));
    this._spark.update(version.history, now);
    const missing = 'No snippet: the server did not describe this version';
    for (const [node, kind] of [
      [this._python, 'python'],
      [this._curl, 'curl']
    ] as [HTMLButtonElement, 'python' | 'curl'][]) {
      node.disabled = !version.snippets[kind];
      if (!version.snippets[kind]) {
        setAttr(node, 'title', missing);
      }
    }
    this._try.disabled = !version.ready;
  }

  private _data: IVersion;
  private _name = el('span', 'jp-nbdeploy-Version-name');
  private _role = el('span', 'jp-nbdeploy-Role');
  private _share = el('span', 'jp-nbdeploy-Share');
  private _rate = el('span', 'jp-nbdeploy-Stat-value');
  private _errors = el('span', 'jp-nbdeploy-Stat-value');
  private _p50 = el('span', 'jp-nbdeploy-Stat-value');
  private _p95 = el('span', 'jp-nbdeploy-Stat-value');
  private _reason = el('div', 'jp-nbdeploy-Reason');
  private _spark = new Sparkline();
  private _python: HTMLButtonElement;
  private _curl: HTMLButtonElement;
  private _try: HTMLButtonElement;
}
