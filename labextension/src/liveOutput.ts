import { renderHTML } from '@jupyterlab/rendermime';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { IModel, IOverview, IServer, requestJSON } from './api';
import { el, setText } from './dom';
import { ModelView } from './modelView';

/** The MIME type a `Deployment` (and `%deploy`'s card) carries. */
export const DEPLOYMENT_MIME = 'application/vnd.nbdeploy.deployment.v1+json';

interface IShownDeployment {
  name: string;
  version: number;
  repository: string;
  http_url: string;
}

const POLL_MS = 3000;

/**
 * One poll of the deployments overview for every live output on the page (a notebook
 * with ten cards asks once per tick, not ten times); it runs only while some output
 * listens.
 */
class SharedPoll {
  listen(listener: (overview: IOverview | null) => void): () => void {
    this._listeners.add(listener);
    if (this._listeners.size === 1) {
      this._timer = window.setInterval(() => void this._tick(), POLL_MS);
    }
    void this._tick();
    return () => {
      this._listeners.delete(listener);
      if (this._listeners.size === 0) {
        window.clearInterval(this._timer);
      }
    };
  }

  /** Poll now (after an action), not at the next tick. */
  async refreshSoon(): Promise<void> {
    await this._tick();
  }

  private async _tick(): Promise<void> {
    if (this._busy) {
      return;
    }
    this._busy = true;
    let overview: IOverview | null = null;
    try {
      overview = await requestJSON<IOverview>(['api', 'deployments']);
    } catch {
      overview = null; // no server extension answering: each output keeps its picture
    } finally {
      this._busy = false;
    }
    for (const listener of this._listeners) {
      listener(overview);
    }
  }

  private _listeners = new Set<(overview: IOverview | null) => void>();
  private _timer = 0;
  private _busy = false;
}

const poll = new SharedPoll();

/**
 * A deployment in a notebook output, live: the saved picture (the card, or the
 * deployment's snapshot) first, then the model's versions as the sidebar shows them —
 * traffic, rates, latency, errors, Try it, copy, promote and rollback with their
 * confirmations — updated in place every few seconds while its server answers.
 */
export class DeploymentOutput extends Widget implements IRenderMime.IRenderer {
  constructor(options: IRenderMime.IRendererOptions) {
    super();
    this._options = options;
    this.addClass('jp-nbdeploy-DeploymentOutput');
    this._live.hidden = true;
    this.node.append(this._picture, this._note, this._live);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this._shown = model.data[DEPLOYMENT_MIME] as unknown as IShownDeployment;
    const html = model.data['text/html'];
    if (typeof html === 'string') {
      await renderHTML({
        host: this._picture,
        source: html,
        trusted: model.trusted,
        sanitizer: this._options.sanitizer,
        resolver: this._options.resolver,
        linkHandler: this._options.linkHandler,
        shouldTypeset: false,
        latexTypesetter: null
      });
    }
    this._stop?.();
    this._stop = poll.listen(overview => this._update(overview));
  }

  dispose(): void {
    this._stop?.();
    super.dispose();
  }

  private _update(overview: IOverview | null): void {
    const shown = this._shown!;
    const server = overview?.servers.find(
      s => s.repository === shown.repository || s.http_url === shown.http_url
    );
    const model = server?.models.find(m => m.name === shown.name);
    if (!server || !model) {
      this._live.hidden = true;
      setText(
        this._note,
        server
          ? `${shown.name} is not on its server now (unloaded): the picture above is as it was.`
          : 'Its server is not running now: the picture above is as it was.'
      );
      return;
    }
    setText(
      this._note,
      `live · ${server.label} · updated every ${POLL_MS / 1000} s`
    );
    this._live.hidden = false;
    this._view(server, model, overview!.now);
  }

  private _view(server: IServer, model: IModel, now: number): void {
    const target = { server, refresh: () => poll.refreshSoon() };
    if (!this._modelView) {
      this._modelView = new ModelView(model, target);
      this._live.appendChild(this._modelView.node);
    }
    this._modelView.update(model, target, now);
  }

  private _options: IRenderMime.IRendererOptions;
  private _shown: IShownDeployment | null = null;
  private _stop: (() => void) | null = null;
  private _picture = el('div', 'jp-nbdeploy-DeploymentOutput-picture');
  private _note = el('div', 'jp-nbdeploy-DeploymentOutput-note');
  private _live = el('div', 'jp-nbdeploy-DeploymentOutput-live');
  private _modelView: ModelView | null = null;
}

export const deploymentRendererFactory: IRenderMime.IRendererFactory = {
  safe: false, // it calls the server extension's actions: trusted outputs only
  mimeTypes: [DEPLOYMENT_MIME],
  defaultRank: 40,
  createRenderer: options => new DeploymentOutput(options)
};
