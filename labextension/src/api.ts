import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The URL of a route of nbdeploy's server extension, under Jupyter's base URL. */
export function nbdeployUrl(...parts: string[]): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'nbdeploy', ...parts);
}

/** Netron's page showing the model at `modelUrl` (both served by Jupyter). */
export function netronUrl(modelUrl: string): string {
  return `${nbdeployUrl('netron', 'index.html')}?url=${encodeURIComponent(modelUrl)}`;
}

/** One authenticated JSON call to the server extension. */
export async function requestJSON<T>(
  path: string[],
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const response = await ServerConnection.makeRequest(
    nbdeployUrl(...path),
    init,
    settings
  );
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message = JSON.parse(text).message ?? text;
    } catch {
      // keep the raw text
    }
    throw new ServerConnection.ResponseError(response, message);
  }
  return JSON.parse(text) as T;
}

export interface IVersionRow {
  version: number;
  traffic: number;
  ready: boolean;
  requests: number;
  failures: number;
  p50_ms: number | null;
}

export interface IModelRow {
  name: string;
  infer_url: string;
  versions: IVersionRow[];
  snippet: string;
}

export interface IOverview {
  running: boolean;
  repository: string;
  http_url?: string;
  grpc_url?: string;
  metrics_url?: string;
  models: IModelRow[];
}
