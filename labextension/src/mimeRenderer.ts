import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { nbdeployUrl, netronUrl } from './api';

/** The MIME type `nbd.show` emits. */
export const MIME_TYPE = 'application/vnd.nbdeploy.netron+json';

interface IShown {
  name: string;
  model_id: string;
  height?: number;
}

/** Renders `nbd.show(...)` outputs with netron through Jupyter's server (works on Binder). */
export class NetronOutput extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('jp-nbdeploy-NetronOutput');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const shown = model.data[MIME_TYPE] as unknown as IShown;
    const frame = document.createElement('iframe');
    frame.title = `netron: ${shown.name}`;
    frame.style.height = `${shown.height ?? 600}px`;
    frame.src = netronUrl(nbdeployUrl('artifacts', shown.model_id));
    this.node.replaceChildren(frame);
  }
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [MIME_TYPE],
  defaultRank: 50,
  createRenderer: () => new NetronOutput()
};
