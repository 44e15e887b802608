/**
 * Calls to the podmagic server extension, under the server's base URL and
 * with its authentication (token / XSRF handled by ServerConnection).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { PodSchema } from './schema';

/** One row of the run list (store.run_summary plus live/elapsed/cost). */
export interface IRunRow {
  run_id: string;
  job_name?: string | null;
  backend?: string | null;
  phase?: string | null;
  state?: string | null;
  gpu_id?: string | null;
  price_per_hour_usd?: number | null;
  elapsed_sec?: number | null;
  cost_usd?: number | null;
  exit_code?: number | null;
  live: boolean;
  stop_requested?: boolean;
  sweep_id?: string;
  shard?: string;
  reproduces?: string;
  reproduction_verdict?: string;
  reproduced_by?: string[];
  [key: string]: unknown;
}

/** The run list with the live totals. */
export interface IRunList {
  project_root: string;
  runs: IRunRow[];
  live_count: number;
  live_usd_per_hour: number;
}

/** One run: its row, raw status.json and manifest (null until it ends). */
export interface IRunDetail {
  run: IRunRow;
  status: Record<string, unknown> | null;
  manifest: Record<string, unknown> | null;
  /** The summary line, attempts, notes and folded manifest as HTML (values escaped by the server). */
  html: string;
  /** The run directory (absolute, on the server). */
  path?: string;
}

/** The tail of run.log. */
export interface ILogTail {
  run_id: string;
  size: number;
  lines: string[];
  /** The same lines with ANSI colours as escaped HTML. */
  html: string;
  truncated: boolean;
}

/** Fetch `podmagic/<path>` and parse its JSON; throws on HTTP errors. */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'podmagic', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, text);
  }
  return JSON.parse(text) as T;
}

/** The `%%pod` schema as `python -m podmagic.schema` prints it. */
export function fetchSchema(): Promise<PodSchema> {
  return requestAPI<PodSchema>('schema');
}

/** The runs of the server's project, newest first. */
export function fetchRuns(): Promise<IRunList> {
  return requestAPI<IRunList>('runs');
}

/** One run's detail. */
export function fetchRun(runId: string): Promise<IRunDetail> {
  return requestAPI<IRunDetail>(`runs/${encodeURIComponent(runId)}`);
}

/** The last `lines` lines of a run's log. */
export function fetchLog(runId: string, lines = 200): Promise<ILogTail> {
  return requestAPI<ILogTail>(
    `runs/${encodeURIComponent(runId)}/log?lines=${lines}`
  );
}

/** Ask a live run to stop (its runner polls the stop file). */
export function stopRun(runId: string): Promise<unknown> {
  return requestAPI(`runs/${encodeURIComponent(runId)}/stop`, {
    method: 'POST'
  });
}
