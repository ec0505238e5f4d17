import { Clipboard, showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IModelRow, IOverview, requestJSON } from './api';

export type Action = 'promote' | 'rollback' | 'unload';

/** The local server's deployments: versions, traffic, counts, latency, and actions. */
export class DeploymentsPanel extends Widget {
  constructor(pollMs = 3000) {
    super();
    this.id = 'nbdeploy-deployments';
    this.addClass('jp-nbdeploy-Deployments');
    this.title.caption = 'nbdeploy deployments';
    this._timer = window.setInterval(() => void this.refresh(), pollMs);
    void this.refresh();
  }

  dispose(): void {
    window.clearInterval(this._timer);
    super.dispose();
  }

  /** Fetch and draw the current state. */
  async refresh(): Promise<void> {
    try {
      this.draw(await requestJSON<IOverview>(['api', 'deployments']));
    } catch (error) {
      this.node.textContent = `Cannot read deployments: ${error}`;
    }
  }

  /** Run an action on one model, then redraw. */
  async act(name: string, action: Action): Promise<void> {
    try {
      this.draw(
        await requestJSON<IOverview>(['api', 'deployments', name, action], {
          method: 'POST',
          body: '{}'
        })
      );
    } catch (error) {
      await showErrorMessage(`${action} ${name}`, String(error));
    }
  }

  private draw(overview: IOverview): void {
    const root = document.createElement('div');
    const header = document.createElement('h3');
    header.textContent = overview.running
      ? `Local server · ${overview.http_url}`
      : 'Local server not running';
    root.appendChild(header);
    for (const model of overview.models) {
      root.appendChild(this.modelBlock(model));
    }
    this.node.replaceChildren(root);
  }

  private modelBlock(model: IModelRow): HTMLElement {
    const block = document.createElement('section');
    block.dataset.model = model.name;
    const title = document.createElement('h4');
    title.textContent = model.name;
    block.appendChild(title);
    const table = document.createElement('table');
    table.innerHTML =
      '<tr><th>version</th><th>traffic</th><th>ready</th><th>requests</th><th>p50 ms</th></tr>';
    for (const v of model.versions) {
      const row = table.insertRow();
      for (const cell of [
        v.version,
        `${v.traffic}%`,
        v.ready ? 'yes' : 'no',
        v.requests,
        v.p50_ms ?? '–'
      ]) {
        row.insertCell().textContent = String(cell);
      }
    }
    block.appendChild(table);
    const buttons = document.createElement('div');
    for (const action of ['promote', 'rollback', 'unload'] as Action[]) {
      buttons.appendChild(
        this.button(action, () => void this.act(model.name, action))
      );
    }
    buttons.appendChild(
      this.button('copy client', () => Clipboard.copyToSystem(model.snippet))
    );
    block.appendChild(buttons);
    return block;
  }

  private button(label: string, onClick: () => void): HTMLButtonElement {
    const button = document.createElement('button');
    button.className = 'jp-Button jp-mod-styled jp-mod-reject';
    button.textContent = label;
    button.dataset.action = label;
    button.onclick = onClick;
    return button;
  }

  private _timer: number;
}
