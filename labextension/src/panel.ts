/**
 * The Pods panel (left sidebar): the project's runs, live while in flight;
 * a click shows the manifest table and the log tail; Stop on a live run.
 */
import { showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { fetchLog, fetchRun, IRunRow, stopRun } from './api';
import { el, formatElapsed, formatUsd, formatValue } from './format';
import { RunsModel } from './model';

/** The fields of one run, in display order: [field, label, text]. */
function runFields(run: IRunRow): Array<[string, string, string]> {
  const status = run.live && run.phase ? `${run.state} · ${run.phase}` : run.state;
  return [
    ['name', 'Name', run.job_name || run.run_id],
    ['status', 'Status', formatValue(status)],
    ['backend', 'Backend', formatValue(run.backend)],
    ['gpu', 'GPU', formatValue(run.gpu_id)],
    ['elapsed', 'Elapsed', formatElapsed(run.elapsed_sec)],
    ['cost', 'Cost', formatUsd(run.cost_usd, 3)],
    ['exit', 'Exit code', formatValue(run.exit_code)]
  ];
}

/** The left-sidebar widget. */
export class PodsPanel extends Widget {
  private _body = el('div', 'pm-runs');
  private _info = el('div', 'pm-info');
  private _detail = el('div', 'pm-detail');
  private _cards = new Map<string, HTMLElement>();
  private _selected: string | null = null;
  private _loading = false;
  private _selectedState: string | null | undefined = undefined;

  constructor(private _model: RunsModel) {
    super();
    this.id = 'podmagic-pods';
    this.addClass('pm-PodsPanel');
    this.title.caption = 'Pods (podmagic runs)';
    this.node.append(this._header(), this._body, this._detail);
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

  private _render(): void {
    const list = this._model.list;
    const error = this._model.error;
    this._info.textContent = error ? `error: ${error}` : list ? `${list.project_root} · ${list.runs.length} runs` : 'loading…';
    this._renderRows(list?.runs ?? []);
    const selected = list?.runs.find(run => run.run_id === this._selected);
    if (this._selected && list && !selected) {
      this._clearDetail(); // the run directory is gone
    } else if (selected && (selected.live || selected.state !== this._selectedState)) {
      void this._showDetail(selected);
    }
  }

  /**
   * Update the cards in place (keyed by run id) so a click is never lost to a
   * re-render; the list is re-ordered only when the order of runs changed.
   */
  private _renderRows(runs: IRunRow[]): void {
    const cards = runs.map(run => this._card(run));
    const current = Array.from(this._body.children);
    if (current.length !== cards.length || cards.some((card, i) => current[i] !== card)) {
      this._body.replaceChildren(...cards);
    }
    const ids = new Set(runs.map(run => run.run_id));
    for (const id of Array.from(this._cards.keys())) {
      if (!ids.has(id)) {
        this._cards.delete(id);
      }
    }
  }

  /** A two-line card: name, status and Stop; then backend, GPU, elapsed, cost, exit. */
  private _card(run: IRunRow): HTMLElement {
    let card = this._cards.get(run.run_id);
    if (!card) {
      card = el('div', 'pm-run-row');
      card.dataset.runId = run.run_id;
      card.title = run.run_id;
      card.append(el('div', 'pm-run-head'), el('div', 'pm-run-meta'));
      for (const [field, label] of runFields(run)) {
        const span = el('span', `pm-field pm-field-${field}`);
        span.dataset.field = field;
        span.dataset.label = label;
        card.children[field === 'name' || field === 'status' ? 0 : 1].append(span);
      }
      this._cards.set(run.run_id, card);
    }
    card.dataset.state = String(run.state ?? '');
    card.classList.toggle('pm-live', run.live);
    card.classList.toggle('pm-selected', run.run_id === this._selected);
    for (const [field, label, text] of runFields(run)) {
      const span = card.querySelector(`[data-field="${field}"]`) as HTMLElement;
      if (span.textContent !== text) {
        span.textContent = text;
        span.title = `${label}: ${text}`;
      }
    }
    this._syncStop(card, run);
    return card;
  }

  /** A Stop button on live runs only; disabled once a stop was requested. */
  private _syncStop(card: HTMLElement, run: IRunRow): void {
    const head = card.children[0];
    let stop = head.querySelector('button.pm-stop') as HTMLButtonElement | null;
    if (!run.live) {
      stop?.remove();
      return;
    }
    if (!stop) {
      stop = el('button', 'pm-stop jp-Button', 'Stop');
      head.append(stop);
    }
    if (run.stop_requested) {
      stop.disabled = true;
      stop.textContent = 'Stopping…';
    }
  }

  private _onClick(event: MouseEvent): void {
    const target = event.target as HTMLElement;
    const row = target.closest('.pm-run-row') as HTMLElement | null;
    const runId = row?.dataset.runId;
    if (!runId) {
      return;
    }
    if (target.closest('button.pm-stop')) {
      void this._stop(runId, target as HTMLButtonElement);
      return;
    }
    if (runId === this._selected) {
      this._clearDetail(); // a second click closes it
    } else {
      this._selected = runId;
      this._selectedState = undefined;
    }
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

  /** Fetch and show one run's manifest (or status) and log tail; one fetch at a time. */
  private async _showDetail(run: IRunRow): Promise<void> {
    if (this._loading) {
      return;
    }
    this._loading = true;
    this._selectedState = run.state;
    try {
      const [detail, log] = await Promise.all([fetchRun(run.run_id), fetchLog(run.run_id)]);
      if (this._selected === run.run_id) {
        const what = detail.manifest ? 'manifest' : run.live ? 'live status' : 'status';
        this._fillDetail(run.run_id, `${run.run_id} (${what})`, detail.manifest ?? detail.status ?? {}, log.lines);
      }
    } catch (reason) {
      this._selectedState = undefined; // try again on the next poll
      this._detail.replaceChildren(el('div', 'pm-error', `could not load ${run.run_id}: ${reason}`));
    } finally {
      this._loading = false;
    }
  }

  /** Update the detail in place; the log follows its end only if it was scrolled there. */
  private _fillDetail(runId: string, title: string, data: Record<string, unknown>, lines: string[]): void {
    let pre = this._detail.querySelector('pre.pm-log') as HTMLPreElement | null;
    if (this._detail.dataset.runId !== runId || !pre) {
      pre = el('pre', 'pm-log');
      this._detail.replaceChildren(el('h3', 'pm-title'), el('dl', 'pm-manifest'), el('h3', '', 'Log tail'), pre);
      this._detail.dataset.runId = runId;
    }
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    this._detail.querySelector('.pm-title')!.textContent = title;
    this._detail.querySelector('.pm-manifest')!.replaceWith(manifestTable(data));
    const text = lines.join('\n');
    if (pre.textContent !== text) {
      pre.textContent = text;
      if (atEnd) {
        pre.scrollTop = pre.scrollHeight;
      }
    }
  }

  /** Hide the detail. */
  private _clearDetail(): void {
    this._selected = null;
    this._selectedState = undefined;
    delete this._detail.dataset.runId;
    this._detail.replaceChildren();
  }
}

/** The manifest (or live status) as a key/value grid. */
export function manifestTable(data: Record<string, unknown>): HTMLElement {
  const list = el('dl', 'pm-manifest');
  for (const [key, value] of Object.entries(data)) {
    const dt = el('dt', '', key);
    const dd = el('dd', '', formatValue(value));
    dd.dataset.key = key;
    list.append(dt, dd);
  }
  return list;
}
