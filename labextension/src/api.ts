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

/** An error the server extension answered with: its message, never a traceback. */
export class ApiError extends Error {}

/** One authenticated JSON call to the server extension. */
export async function requestJSON<T>(
  path: string[],
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const search = new URLSearchParams(query).toString();
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      nbdeployUrl(...path) + (search ? `?${search}` : ''),
      init,
      settings
    );
  } catch (error) {
    throw new ApiError(`Jupyter's server did not answer: ${error}`);
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text || `HTTP ${response.status}`;
    try {
      message = JSON.parse(text).message ?? message;
    } catch {
      // keep the raw text
    }
    throw new ApiError(message);
  }
  return JSON.parse(text) as T;
}

/** POST a JSON body to the server extension. */
export function postJSON<T>(path: string[], body: unknown): Promise<T> {
  return requestJSON<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

/** Where a version's extra (example, report.html, report.csv) is served by Jupyter. */
export function extraUrl(
  repository: string,
  model: string,
  version: number,
  key: string
): string {
  const path = nbdeployUrl(
    'api',
    'deployments',
    encodeURIComponent(model),
    'versions',
    String(version),
    key
  );
  return `${path}?repository=${encodeURIComponent(repository)}`;
}

/** One 10-second window of a version's last minutes. */
export interface IWindow {
  t: number;
  requests: number;
  failures: number;
  p50_ms: number | null;
  p95_ms: number | null;
}

export interface IVersion {
  version: number;
  ready: boolean;
  reason: string;
  traffic: number;
  role: string;
  requests: number;
  failures: number;
  p50_ms: number | null;
  p95_ms: number | null;
  requests_per_s: number;
  loaded_at: number;
  history: IWindow[];
  source: string;
  steps: string[];
  parity: string;
  extras: string[];
  snippets: { python?: string; curl?: string };
}

/** What an action will change, as its confirmation dialog says it. */
export interface IPlan {
  action: string;
  enabled: boolean;
  summary: string;
  changes: string[];
  before: Record<string, number>;
  after: Record<string, number>;
}

export interface IModel {
  name: string;
  ready: boolean;
  reason: string;
  infer_url: string;
  on_disk: number[];
  split: string;
  versions: IVersion[];
  actions: Record<string, IPlan>;
}

export interface IServer {
  repository: string;
  label: string;
  default: boolean;
  http_url: string;
  grpc_url: string;
  metrics_url: string;
  error: string;
  models: IModel[];
}

export interface IOverview {
  now: number;
  servers: IServer[];
  start_hint: string;
}

/** The split before and after an action (what Undo restores). */
export interface IActed {
  before: Record<string, number>;
  after: Record<string, number>;
}

export interface IInputSpec {
  name: string;
  datatype: string;
  shape: number[];
  image: {
    layout: 'NCHW' | 'NHWC';
    channels: number;
    height: number;
    width: number;
  } | null;
}

export interface ITryStart {
  body: { inputs: ITensor[] };
  source: string;
  inputs: IInputSpec[];
}

export interface ITensor {
  name: string;
  shape: number[];
  datatype: string;
  data: unknown[];
}

export interface ITryAnswer {
  ms: number;
  version: number;
  outputs: {
    name: string;
    datatype: string;
    shape: number[];
    first: unknown[];
    size: number;
  }[];
  response: unknown;
}
