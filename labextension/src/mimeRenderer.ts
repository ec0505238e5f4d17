import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { nbdeployUrl, netronUrl } from './api';

/** The MIME type `nbd.show` emits. */
export const MIME_TYPE = 'application/vnd.nbdeploy.netron+json';

interface IShown {
  name: string;
  model_id: string;
  height?: number;
}

/**
 * Renders `nbd.show(...)` outputs: the static drawing saved with the output first (a
 * notebook opened later reads well), then netron through Jupyter's server once the
 * model it shows is still there (the kernel that showed it may be gone).
 */
export class NetronOutput extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('jp-nbdeploy-NetronOutput');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const shown = model.data[MIME_TYPE] as unknown as IShown;
    const svg = model.data['image/svg+xml'];
    const still = document.createElement('div');
    still.className = 'jp-nbdeploy-NetronStill';
    if (typeof svg === 'string') {
      still.appendChild(svgImage(svg, shown.name));
    }
    const note = document.createElement('div');
    note.className = 'jp-nbdeploy-NetronNote';
    note.style.cssText = 'font-size: var(--jp-ui-font-size0); opacity: 0.8';
    note.textContent = `${shown.name}: static drawing; checking whether netron can open it…`;
    this.node.replaceChildren(note, still);
    const modelUrl = nbdeployUrl('artifacts', shown.model_id);
    if (!(await isServed(modelUrl))) {
      note.textContent =
        `${shown.name}: static drawing (run the cell again for the interactive ` +
        'netron view: the kernel that showed it has gone)';
      return;
    }
    const frame = document.createElement('iframe');
    frame.title = `netron: ${shown.name}`;
    frame.style.height = `${shown.height ?? 600}px`;
    frame.src = netronUrl(modelUrl);
    this.node.replaceChildren(frame);
  }
}

/** The saved SVG as an image (an <img> runs none of the markup's scripts). */
function svgImage(svg: string, name: string): HTMLImageElement {
  const image = document.createElement('img');
  image.alt = `graph of ${name}`;
  image.style.maxWidth = '100%';
  image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  return image;
}

/** Whether Jupyter's server still has the shown model (HEAD, authenticated). */
async function isServed(url: string): Promise<boolean> {
  try {
    const settings = ServerConnection.makeSettings();
    const response = await ServerConnection.makeRequest(
      url,
      { method: 'HEAD' },
      settings
    );
    return response.ok;
  } catch {
    return false;
  }
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [MIME_TYPE],
  defaultRank: 50,
  createRenderer: () => new NetronOutput()
};
