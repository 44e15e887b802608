/**
 * The Pods panel (left sidebar): the project's runs, live while in flight;
 * a click shows the manifest table and the log tail; Stop on a live run.
 */
import { showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { fetchLog, fetchRun, IRunRow, stopRun } from './api';
import { el, formatElapsed, formatUsd, formatValue } from './format';
import { RunsModel } from './model';

const COLUMNS = ['Name', 'Status', 'Backend', 'GPU', 'Elapsed', 'Cost', 'Exit', ''];

/** The cells of one run row, in COLUMNS order (without the action cell). */
function rowCells(run: IRunRow): string[] {
  const status = run.live && run.phase ? `${run.state} · ${run.phase}` : run.state;
  return [
    run.job_name || run.run_id,
    formatValue(status),
    formatValue(run.backend),
    formatValue(run.gpu_id),
    formatElapsed(run.elapsed_sec),
    formatUsd(run.cost_usd, 3),
    formatValue(run.exit_code)
  ];
}

/** The left-sidebar widget. */
export class PodsPanel extends Widget {
  private _body = el('tbody');
  private _info = el('div', 'pm-info');
  private _detail = el('div', 'pm-detail');
  private _selected: string | null = null;
  private _selectedState: string | null | undefined = undefined;

  constructor(private _model: RunsModel) {
    super();
    this.id = 'podmagic-pods';
    this.addClass('pm-PodsPanel');
    this.title.caption = 'Pods (podmagic runs)';
    this.node.append(this._header(), this._table(), this._detail);
    this._body.addEventListener('click', event => this._onClick(event));
    _model.changed.connect(this._render, this);
  }

  private _header(): HTMLElement {
    const header = el('div', 'pm-header');
    const refresh = el('button', 'pm-refresh jp-Button', 'Refresh');
    refresh.addEventListener('click', () => void this._model.refresh());
    header.append(el('h2', '', 'Pods'), refresh, this._info);
    return header;
  }

  private _table(): HTMLElement {
    const table = el('table', 'pm-runs');
    const head = el('tr');
    COLUMNS.forEach(name => head.append(el('th', '', name)));
    table.append(el('thead'), this._body);
    table.tHead!.append(head);
    return table;
  }

  private _render(): void {
    const list = this._model.list;
    const error = this._model.error;
    this._info.textContent = error ? `error: ${error}` : list ? `${list.project_root} · ${list.runs.length} runs` : 'loading…';
    const rows = (list?.runs ?? []).map(run => this._row(run));
    this._body.replaceChildren(...rows);
    const selected = list?.runs.find(run => run.run_id === this._selected);
    if (selected && (selected.live || selected.state !== this._selectedState)) {
      void this._showDetail(selected);
    }
  }

  private _row(run: IRunRow): HTMLElement {
    const tr = el('tr', 'pm-run-row');
    tr.dataset.runId = run.run_id;
    tr.dataset.state = String(run.state ?? '');
    tr.title = run.run_id;
    tr.classList.toggle('pm-live', run.live);
    tr.classList.toggle('pm-selected', run.run_id === this._selected);
    rowCells(run).forEach((text, i) => tr.append(el('td', `pm-col-${i}`, text)));
    const action = el('td', 'pm-actions');
    if (run.live) {
      const stop = el('button', 'pm-stop jp-Button', run.stop_requested ? 'Stopping…' : 'Stop');
      stop.disabled = !!run.stop_requested;
      action.append(stop);
    }
    tr.append(action);
    return tr;
  }

  private _onClick(event: MouseEvent): void {
    const target = event.target as HTMLElement;
    const row = target.closest('tr.pm-run-row') as HTMLElement | null;
    const runId = row?.dataset.runId;
    if (!runId) {
      return;
    }
    if (target.closest('button.pm-stop')) {
      void this._stop(runId, target as HTMLButtonElement);
      return;
    }
    this._selected = runId;
    this._selectedState = undefined;
    this._render();
  }

  private async _stop(runId: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    button.textContent = 'Stopping…';
    try {
      await stopRun(runId);
    } catch (reason) {
      void showErrorMessage('Could not stop the run', String(reason));
    }
    await this._model.refresh();
  }

  private async _showDetail(run: IRunRow): Promise<void> {
    this._selectedState = run.state;
    try {
      const [detail, log] = await Promise.all([fetchRun(run.run_id), fetchLog(run.run_id)]);
      if (this._selected !== run.run_id) {
        return;
      }
      const data = detail.manifest ?? detail.status ?? {};
      const title = el('h3', '', `${run.run_id} ${detail.manifest ? '(manifest)' : '(live status)'}`);
      const pre = el('pre', 'pm-log', log.lines.join('\n'));
      this._detail.dataset.runId = run.run_id;
      this._detail.replaceChildren(title, manifestTable(data), el('h3', '', 'Log tail'), pre);
      pre.scrollTop = pre.scrollHeight;
    } catch (reason) {
      this._detail.replaceChildren(el('div', 'pm-error', `could not load ${run.run_id}: ${reason}`));
    }
  }
}

/** A two-column key/value table of a manifest or status document. */
export function manifestTable(data: Record<string, unknown>): HTMLElement {
  const table = el('table', 'pm-manifest');
  for (const [key, value] of Object.entries(data)) {
    const tr = el('tr');
    tr.append(el('th', '', key), el('td', '', formatValue(value)));
    table.append(tr);
  }
  return table;
}
