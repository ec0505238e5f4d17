import {
  ABCWidgetFactory,
  DocumentRegistry,
  DocumentWidget
} from '@jupyterlab/docregistry';

import { nbdeployUrl } from './api';
import { NetronFrame } from './netronFrame';

export const FACTORY = 'Netron';

/** Opens `.onnx` files from the file browser in a netron tab. */
export class OnnxViewerFactory extends ABCWidgetFactory<
  DocumentWidget<NetronFrame>,
  DocumentRegistry.IModel
> {
  protected createNewWidget(
    context: DocumentRegistry.Context
  ): DocumentWidget<NetronFrame> {
    const modelUrl = nbdeployUrl('files', ...context.path.split('/'));
    const content = new NetronFrame(modelUrl, context.path);
    const widget = new DocumentWidget({ content, context });
    widget.addClass('jp-nbdeploy-OnnxViewer');
    return widget;
  }
}
