import { Widget } from '@lumino/widgets';

import { netronUrl } from './api';

/** An iframe of netron (served by Jupyter) showing one model. */
export class NetronFrame extends Widget {
  constructor(modelUrl: string, title: string) {
    super();
    this.addClass('jp-nbdeploy-NetronFrame');
    const frame = document.createElement('iframe');
    frame.title = `netron: ${title}`;
    frame.src = netronUrl(modelUrl);
    this.node.appendChild(frame);
  }
}
