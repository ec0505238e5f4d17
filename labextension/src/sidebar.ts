import { Widget } from '@lumino/widgets';

import { IOverview, IServer, requestJSON } from './api';
import { button, el, reconcile, setAttr, setText } from './dom';
import { ModelView } from './modelView';

/** One running local server: where it is, and its models. */
class ServerView {
  readonly node = el('section', 'jp-nbdeploy-Server');

  constructor(refresh: () => Promise<void>) {
    this._refresh = refresh;
    const head = el('div', 'jp-nbdeploy-Server-head');
    head.append(this._label, this._url);
    this.node.append(head, this._error, this._empty, this._models);
  }

  update(server: IServer, now: number): void {
    this.node.dataset.repository = server.repository;
    setText(this._label, server.label + (server.default ? ' (default)' : ''));
    setAttr(this._label, 'title', `Model repository: ${server.repository}`);
    setText(this._url, server.http_url);
    setAttr(
      this._url,
      'title',
      `HTTP ${server.http_url} · gRPC ${server.grpc_url} · metrics ${server.metrics_url}`
    );
    setText(this._error, server.error);
    this._error.hidden = !server.error;
    this._empty.hidden = !!server.error || server.models.length > 0;
    setText(
      this._empty,
      'No models yet. In a notebook: %deploy model --example x, or nbd.serve(model, example=x).'
    );
    const target = { server, refresh: this._refresh };
    reconcile(
      this._models,
      this._views,
      server.models,
      m => m.name,
      m => new ModelView(m, target),
      (view, m) => view.update(m, target, now)
    );
  }

  private _refresh: () => Promise<void>;
  private _label = el('span', 'jp-nbdeploy-Server-label');
  private _url = el('span', 'jp-nbdeploy-Server-url');
  private _error = el('div', 'jp-nbdeploy-Reason');
  private _empty = el('p', 'jp-nbdeploy-Empty');
  private _models = el('div', 'jp-nbdeploy-Models');
  private _views = new Map<string, ModelView>();
}

/**
 * Every running local server of this user, one section each, with its models' live
 * view and actions. Each poll updates the panel in place: nodes stay, only texts and
 * attributes change, so a selection, an open history or a dialog survives it.
 */
export class DeploymentsPanel extends Widget {
  constructor(pollMs = 3000) {
    super();
    this.id = 'nbdeploy-deployments';
    this.addClass('jp-nbdeploy-Deployments');
    this.title.caption = 'nbdeploy: deployments';
    const head = el('div', 'jp-nbdeploy-Deployments-head');
    head.append(
      el('h2', 'jp-nbdeploy-Deployments-title', 'Deployments'),
      button('⟳', 'refresh', () => void this.refresh(), 'Refresh now')
    );
    this._empty.hidden = true;
    this.node.append(head, this._error, this._empty, this._servers);
    // Polls only while it shows; showing it again brings it up to date at once.
    this._timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.refresh();
      }
    }, pollMs);
    void this.refresh();
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  dispose(): void {
    window.clearInterval(this._timer);
    super.dispose();
  }

  /** Fetch the servers' state and bring the panel up to date. */
  refresh(): Promise<void> {
    if (!this._pending) {
      this._pending = this._refresh().finally(() => (this._pending = null));
      return this._pending;
    }
    // One poll at a time, however slow a server is; the one on its way may carry what
    // was true before an action, so one more follows it.
    this._next ??= this._pending.then(() => {
      this._next = null;
      return this.refresh();
    });
    return this._next;
  }

  private async _refresh(): Promise<void> {
    let overview: IOverview;
    try {
      overview = await requestJSON<IOverview>(['api', 'deployments']);
    } catch (error) {
      setText(
        this._error,
        `Cannot read deployments: ${(error as Error).message}`
      );
      this._error.hidden = false;
      return;
    }
    this._error.hidden = true;
    this._empty.hidden = overview.servers.length > 0;
    setText(this._empty, overview.start_hint);
    reconcile(
      this._servers,
      this._views,
      overview.servers,
      s => s.repository,
      () => new ServerView(() => this.refresh()),
      (view, s) => view.update(s, overview.now)
    );
  }

  private _timer: number;
  private _pending: Promise<void> | null = null;
  private _next: Promise<void> | null = null;
  private _error = el('div', 'jp-nbdeploy-Reason');
  private _empty = el('p', 'jp-nbdeploy-Empty');
  private _servers = el('div', 'jp-nbdeploy-Servers');
  private _views = new Map<string, ServerView>();
}
