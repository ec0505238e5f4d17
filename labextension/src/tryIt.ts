import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import {
  IInputSpec,
  IServer,
  ITensor,
  ITryAnswer,
  ITryStart,
  postJSON,
  requestJSON
} from './api';
import { button, el } from './dom';

const SHOWN_RESPONSE_CHARS = 20000;

/** The request as JSON people can edit: one line per input tensor. */
function format(body: { inputs: ITensor[] }): string {
  const rest = Object.fromEntries(
    Object.entries(body).filter(([key]) => key !== 'inputs')
  );
  const inputs = body.inputs.map(t => `    ${JSON.stringify(t)}`).join(',\n');
  const extra = Object.keys(rest).length
    ? `,\n  ${JSON.stringify(rest).slice(1, -1)}`
    : '';
  return `{\n  "inputs": [\n${inputs}\n  ]${extra}\n}`;
}

/**
 * A picture as an image-shaped input: drawn on a canvas at the input's size, read back
 * as floats in [0, 1] (grey for one channel), in the input's layout, batch of one.
 */
export async function imageTensor(
  file: Blob,
  spec: IInputSpec
): Promise<ITensor> {
  const { layout, channels, height, width } = spec.image!;
  const bitmap = await createImageBitmap(file);
  const canvas = el('canvas');
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d')!;
  context.drawImage(bitmap, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const data = new Array<number>(channels * height * width);
  const round = (v: number) => Math.round(v * 1e5) / 1e5;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = (y * width + x) * 4;
      const rgb = [rgba[at] / 255, rgba[at + 1] / 255, rgba[at + 2] / 255];
      const grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
      for (let c = 0; c < channels; c++) {
        const value = channels === 1 ? grey : rgb[c];
        const position =
          layout === 'NCHW'
            ? c * height * width + y * width + x
            : (y * width + x) * channels + c;
        data[position] = round(value);
      }
    }
  }
  const shape =
    layout === 'NCHW'
      ? [1, channels, height, width]
      : [1, height, width, channels];
  return { name: spec.name, datatype: spec.datatype, shape, data };
}

/** The Try-it editor of one version: a request to edit (or pictures), Send, the answer. */
class TryItBody extends Widget {
  constructor(
    server: IServer,
    model: string,
    version: number,
    start: ITryStart
  ) {
    super();
    this.addClass('jp-nbdeploy-TryIt');
    this._server = server;
    this._model = model;
    this._version = version;
    this.node.append(
      el(
        'p',
        'jp-nbdeploy-TryIt-intro',
        `Sends a KServe V2 JSON request to ${model} v${version} on the server of ${server.label}. ` +
          `It starts from ${start.source}; edit it as you like.`
      ),
      this._editor
    );
    this._editor.value = format(start.body);
    this._editor.spellcheck = false;
    this._editor.rows = Math.min(14, 4 + start.body.inputs.length * 2);
    for (const spec of start.inputs.filter(s => s.image)) {
      this.node.appendChild(this._picker(spec));
    }
    const send = button(
      'Send',
      'send',
      () => void this.send(),
      'Send this request'
    );
    send.classList.add('jp-mod-accept');
    this.node.append(send, this._result);
  }

  /** Send the request in the editor (pictures in place of their inputs' data). */
  async send(): Promise<void> {
    this._result.replaceChildren(el('p', 'jp-nbdeploy-TryIt-wait', 'Sending…'));
    let body: { inputs?: ITensor[] };
    try {
      body = JSON.parse(this._editor.value);
    } catch (error) {
      this._error(`The request is not valid JSON: ${(error as Error).message}`);
      return;
    }
    if (this._images.size && Array.isArray(body.inputs)) {
      body = {
        ...body,
        inputs: body.inputs.map(t => this._images.get(t.name) ?? t)
      };
    }
    let answer: ITryAnswer;
    try {
      answer = await postJSON<ITryAnswer>(
        ['api', 'deployments', encodeURIComponent(this._model), 'try'],
        { repository: this._server.repository, version: this._version, body }
      );
    } catch (error) {
      this._error(
        `The server refused the request: ${(error as Error).message}`
      );
      return;
    }
    this._show(answer);
  }

  private _picker(spec: IInputSpec): HTMLElement {
    const { layout, channels, height, width } = spec.image!;
    const row = el('div', 'jp-nbdeploy-TryIt-image');
    const label = el('label');
    const input = el('input');
    input.type = 'file';
    input.accept = 'image/*';
    input.dataset.input = spec.name;
    const colour = channels === 1 ? 'grey' : 'RGB';
    const note = el(
      'span',
      'jp-nbdeploy-TryIt-note',
      `Or a picture for ${spec.name}: resized in the browser to ${width}×${height} (${colour}, ${layout}), ` +
        'sent as floats in [0, 1] in place of its data above.'
    );
    label.append(input, note);
    input.addEventListener('change', () => {
      const file = input.files?.[0];
      if (!file) {
        this._images.delete(spec.name);
        return;
      }
      void imageTensor(file, spec).then(
        tensor => {
          this._images.set(spec.name, tensor);
          note.textContent = `${spec.name} ← ${file.name}, resized to ${width}×${height} (${colour}), floats in [0, 1]`;
        },
        error => this._error(`Cannot read ${file.name} as a picture: ${error}`)
      );
    });
    row.appendChild(label);
    return row;
  }

  private _show(answer: ITryAnswer): void {
    const head = el(
      'p',
      'jp-nbdeploy-TryIt-latency',
      `v${answer.version} answered in ${answer.ms.toPrecision(3)} ms (round trip from Jupyter's server)`
    );
    const table = el('table', 'jp-nbdeploy-TryIt-outputs');
    const header = table.createTHead().insertRow();
    for (const title of ['output', 'type', 'shape', 'first values']) {
      header.appendChild(el('th', '', title));
    }
    const rows = table.createTBody();
    for (const output of answer.outputs) {
      const row = rows.insertRow();
      row.dataset.output = output.name;
      const first = output.first.map(v =>
        typeof v === 'number' ? Number(v.toPrecision(4)) : v
      );
      const more =
        output.size > first.length ? `, … (${output.size} values)` : '';
      for (const text of [
        output.name,
        output.datatype,
        `[${output.shape.join(', ')}]`,
        `${first.join(', ')}${more}`
      ]) {
        row.insertCell().textContent = text;
      }
    }
    const whole = el('details', 'jp-nbdeploy-TryIt-response');
    const raw = JSON.stringify(answer.response);
    whole.append(
      el('summary', '', 'Whole response (JSON)'),
      el(
        'pre',
        '',
        raw.length > SHOWN_RESPONSE_CHARS
          ? `${raw.slice(0, SHOWN_RESPONSE_CHARS)} …`
          : raw
      )
    );
    this._result.replaceChildren(head, table, whole);
  }

  private _error(message: string): void {
    this._result.replaceChildren(el('p', 'jp-nbdeploy-TryIt-error', message));
  }

  private _server: IServer;
  private _model: string;
  private _version: number;
  private _editor = el('textarea', 'jp-nbdeploy-TryIt-editor');
  private _images = new Map<string, ITensor>();
  private _result = el('div', 'jp-nbdeploy-TryIt-result');
}

/** Open the Try-it editor for one version (its start request read from the server). */
export async function openTryIt(
  server: IServer,
  model: string,
  version: number
): Promise<void> {
  let start: ITryStart;
  try {
    start = await requestJSON<ITryStart>(
      ['api', 'deployments', encodeURIComponent(model), 'try'],
      {},
      { repository: server.repository, version: String(version) }
    );
  } catch (error) {
    await showDialog({
      title: `Try ${model} v${version}`,
      body: `Cannot start: ${(error as Error).message}`,
      buttons: [Dialog.okButton({ label: 'Close' })]
    });
    return;
  }
  await showDialog({
    title: `Try ${model} v${version}`,
    body: new TryItBody(server, model, version, start),
    buttons: [Dialog.cancelButton({ label: 'Close' })]
  });
}
