import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IActed, IModel, IPlan, IServer, extraUrl, postJSON } from './api';
import { button, el, reconcile, setAttr, setText } from './dom';
import { openTryIt } from './tryIt';
import { VersionCard } from './versionCard';

const ACTIONS: { action: string; label: string; done: string }[] = [
  { action: 'promote', label: 'Promote', done: 'Promoted' },
  { action: 'rollback', label: 'Roll back', done: 'Rolled back' },
  { action: 'unload', label: 'Unload', done: 'Unloaded' }
];

function splitText(split: Record<string, number>): string {
  const parts = Object.entries(split)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([v, share]) => `v${v} ${Number(share.toPrecision(3))}%`);
  return parts.join(' · ') || 'nothing served';
}

/** Where an action goes: one model of the server of one repository. */
export interface ITarget {
  server: IServer;
  refresh: () => Promise<void>;
}

/**
 * One model of one server: its versions side by side, promote / rollback / unload with
 * a confirmation that says what will change (and Undo after), and its version history
 * with lineage. Built once and updated in place by each poll.
 */
export class ModelView {
  readonly node = el('section', 'jp-nbdeploy-Model');

  constructor(model: IModel, target: ITarget) {
    this._model = model;
    this._target = target;
    this.node.dataset.model = model.name;
    const head = el('div', 'jp-nbdeploy-Model-head');
    head.append(this._name, this._split);
    const actions = el('div', 'jp-nbdeploy-Actions');
    for (const { action, label } of ACTIONS) {
      const node = button(label, action, () => void this._confirm(action));
      this._buttons.set(action, node);
      actions.appendChild(node);
    }
    this._undo.hidden = true;
    this._history.append(this._historySummary, this._historyList);
    this.node.append(
      head,
      this._state,
      this._versions,
      actions,
      this._undo,
      this._history
    );
  }

  update(model: IModel, target: ITarget, now: number): void {
    this._model = model;
    this._target = target;
    setText(this._name, model.name);
    setText(this._split, model.ready ? model.split : 'not served');
    setText(
      this._state,
      model.ready ? '' : `${model.reason}: its files stay on disk`
    );
    reconcile(
      this._versions,
      this._cards,
      model.versions,
      v => String(v.version),
      v => new VersionCard(v, version => this._tryIt(version)),
      (card, v) => card.update(v, now)
    );
    for (const { action } of ACTIONS) {
      const node = this._buttons.get(action)!;
      const plan = model.actions[action];
      node.disabled = !plan?.enabled;
      setAttr(node, 'title', plan?.summary ?? '');
      setAttr(node, 'aria-disabled', plan?.enabled ? null : 'true');
    }
    this._updateHistory(model);
  }

  private _updateHistory(model: IModel): void {
    const loaded = new Map(model.versions.map(v => [v.version, v]));
    const numbers = [...new Set([...model.on_disk, ...loaded.keys()])].sort(
      (a, b) => b - a
    );
    setText(
      this._historySummary,
      `Versions and lineage (${numbers.length} on disk)`
    );
    reconcile(
      this._historyList,
      this._entries,
      numbers,
      String,
      () => ({ node: el('li', 'jp-nbdeploy-History-entry') }),
      (entry, number) => {
        entry.node.dataset.version = String(number);
        const v = loaded.get(number);
        const parts: [string, string][] = [];
        const state = v
          ? `${v.role} · ${Number(v.traffic.toPrecision(3))}% · loaded ${new Date(v.loaded_at * 1000).toLocaleTimeString()}`
          : 'on disk, not loaded';
        parts.push(['jp-nbdeploy-History-title', `v${number} · ${state}`]);
        if (v?.source || v?.steps.length) {
          parts.push([
            'jp-nbdeploy-Lineage',
            [v.source, ...v.steps].filter(Boolean).join(' → ')
          ]);
        }
        if (v?.parity) {
          parts.push(['jp-nbdeploy-Parity', `parity ${v.parity}`]);
        }
        const key = JSON.stringify([parts, v?.extras ?? []]);
        if (entry.node.dataset.key === key) {
          return; // unchanged: leave the nodes (and any selection in them) alone
        }
        entry.node.dataset.key = key;
        entry.node.replaceChildren(
          ...parts.map(([className, text]) => el('div', className, text))
        );
        for (const [extra, label] of [
          ['report.html', 'comparison report'],
          ['report.csv', 'CSV']
        ]) {
          if (v?.extras.includes(extra)) {
            const link = el('a', 'jp-nbdeploy-Report', label);
            link.href = extraUrl(
              this._target.server.repository,
              model.name,
              number,
              extra
            );
            link.target = '_blank';
            link.rel = 'noopener';
            entry.node.appendChild(link);
          }
        }
      }
    );
  }

  private async _confirm(action: string): Promise<void> {
    const plan: IPlan | undefined = this._model.actions[action];
    if (!plan?.enabled) {
      return;
    }
    const { server } = this._target;
    const label = ACTIONS.find(a => a.action === action)!.label;
    const body = new Widget();
    body.addClass('jp-nbdeploy-Confirm');
    body.node.append(
      el(
        'p',
        'jp-nbdeploy-Confirm-server',
        `Server of ${server.label} (${server.http_url})`
      ),
      el('p', 'jp-nbdeploy-Confirm-summary', plan.summary)
    );
    const list = el('ul', 'jp-nbdeploy-Confirm-changes');
    for (const change of plan.changes) {
      list.appendChild(el('li', '', change));
    }
    body.node.appendChild(list);
    const result = await showDialog({
      title: `${label} ${this._model.name}?`,
      body,
      buttons: [
        Dialog.cancelButton(),
        action === 'promote'
          ? Dialog.okButton({ label })
          : Dialog.warnButton({ label })
      ]
    });
    if (result.button.accept) {
      await this._act(action);
    }
  }

  private async _act(action: string): Promise<void> {
    const { server } = this._target;
    const name = this._model.name;
    let done: IActed;
    try {
      done = await postJSON<IActed>(
        ['api', 'deployments', encodeURIComponent(name), action],
        {
          repository: server.repository
        }
      );
    } catch (error) {
      await showErrorMessage(
        `Could not ${action} ${name}`,
        String((error as Error).message ?? error)
      );
      await this._target.refresh();
      return;
    }
    const past = ACTIONS.find(a => a.action === action)!.done;
    this._showUndo(
      `${past} ${name}: ${splitText(done.before)} → ${splitText(done.after)}`,
      Object.keys(done.before).length ? done.before : null
    );
    await this._target.refresh();
  }

  private _showUndo(
    text: string,
    restore: Record<string, number> | null
  ): void {
    const { server } = this._target;
    const name = this._model.name;
    const message = el('span', 'jp-nbdeploy-Undo-text', text);
    const parts: HTMLElement[] = [message];
    if (restore) {
      parts.push(
        button(
          'Undo',
          'undo',
          () => {
            void (async () => {
              try {
                await postJSON(
                  ['api', 'deployments', encodeURIComponent(name), 'load'],
                  {
                    repository: server.repository,
                    traffic: restore
                  }
                );
                this._showUndo(
                  `Undone: ${name} serves ${splitText(restore)} again`,
                  null
                );
              } catch (error) {
                await showErrorMessage(
                  `Could not undo on ${name}`,
                  String((error as Error).message ?? error)
                );
              }
              await this._target.refresh();
            })();
          },
          `Load ${name} again as it was: ${splitText(restore)}`
        )
      );
    }
    parts.push(
      button('×', 'dismiss', () => (this._undo.hidden = true), 'Dismiss')
    );
    this._undo.replaceChildren(...parts);
    this._undo.hidden = false;
  }

  private _tryIt(version: number): void {
    void openTryIt(this._target.server, this._model.name, version);
  }

  private _model: IModel;
  private _target: ITarget;
  private _name = el('h3', 'jp-nbdeploy-Model-name');
  private _split = el('span', 'jp-nbdeploy-Split');
  private _state = el('div', 'jp-nbdeploy-Reason');
  private _versions = el('div', 'jp-nbdeploy-Versions');
  private _cards = new Map<string, VersionCard>();
  private _buttons = new Map<string, HTMLButtonElement>();
  private _undo = el('div', 'jp-nbdeploy-Undo');
  private _history = el('details', 'jp-nbdeploy-History');
  private _historySummary = el('summary');
  private _historyList = el('ul', 'jp-nbdeploy-History-list');
  private _entries = new Map<string, { node: HTMLElement }>();
}
