import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon } from '@jupyterlab/ui-components';

import { deploymentRendererFactory } from './liveOutput';
import { rendererFactory } from './mimeRenderer';
import { FACTORY, OnnxViewerFactory } from './onnxViewer';
import { DeploymentsPanel } from './sidebar';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<circle cx="5" cy="12" r="3"/><circle cx="19" cy="5" r="3"/><circle cx="19" cy="19" r="3"/>' +
  '<path d="M7.5 11l9-5 .9 1.7-9 5zm0 2l.9-1.7 9 5-.9 1.7z"/></g></svg>';

export const graphIcon = new LabIcon({
  name: 'nbdeploy:graph',
  svgstr: ICON_SVG
});

const COMMANDS = {
  refresh: 'nbdeploy:refresh-deployments',
  open: 'nbdeploy:open-deployments'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbdeploy:plugin',
  description:
    'Netron for .onnx files and nbd.show outputs; a deployments sidebar.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    rendermime.addFactory(rendererFactory, 0);
    rendermime.addFactory(deploymentRendererFactory, 0);

    app.docRegistry.addFileType({
      name: 'onnx',
      displayName: 'ONNX model',
      extensions: ['.onnx'],
      mimeTypes: ['application/octet-stream'],
      fileFormat: null,
      contentType: 'file',
      icon: graphIcon
    });
    app.docRegistry.addWidgetFactory(
      new OnnxViewerFactory({
        name: FACTORY,
        label: 'Netron',
        fileTypes: ['onnx'],
        defaultFor: ['onnx'],
        readOnly: true,
        modelName: 'base64'
      })
    );

    const panel = new DeploymentsPanel();
    panel.title.icon = graphIcon;
    app.shell.add(panel, 'left', { rank: 900 });
    restorer?.add(panel, panel.id);

    app.commands.addCommand(COMMANDS.refresh, {
      label: 'nbdeploy: Refresh deployments',
      execute: () => panel.refresh()
    });
    app.commands.addCommand(COMMANDS.open, {
      label: 'nbdeploy: Show deployments',
      execute: () => app.shell.activateById(panel.id)
    });
    for (const command of Object.values(COMMANDS)) {
      palette?.addItem({ command, category: 'nbdeploy' });
    }
  }
};

export default plugin;
