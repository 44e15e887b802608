/**
 * The Pods panel (left sidebar): the project's runs, live while in flight,
 * a sweep's shards grouped under it; a click shows the run's summary line,
 * folded manifest and log tail (ANSI colours rendered, made by the server
 * extension with every value escaped); Stop on a live run.
 */
import { showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { fetchLog, fetchRun, IRunRow, stopRun } from './api';
import { fetchMetrics, renderSparklines } from './charts';
import { el, formatElapsed, formatUsd, formatValue, plural } from './format';
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

/** `podmagic reproduce` both ways: what this run reproduces (and the verdict), and what reproduces it. */
function reproductionLink(run: IRunRow): string {
  const parts: string[] = [];
  if (run.reproduces) {
    parts.push(`reproduces ${run.reproduces}` + (run.reproduction_verdict ? ` (${run.reproduction_verdict})` : ''));
  }
  if (run.reproduced_by && run.reproduced_by.length) {
    parts.push(`reproduced by ${run.reproduced_by.join(', ')}`);
  }
  return parts.join(' · ');
}

/** The left-sidebar widget. */
export class PodsPanel extends Widget {
  private _body = el('div', 'pm-runs');
  private _info = el('div', 'pm-info');
  private _detail = el('div', 'pm-detail');
  private _cards = new Map<string, HTMLElement>();
  private _groups = new Map<string, HTMLElement>();
  private _selected: string | null = null;
  private _loading = false;
  private _selectedState: string | null | undefined = undefined;

  constructor(
    private _model: RunsModel,
    private _run?: (command: string, args: Record<string, string>) => void
  ) {
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
    this._info.textContent = error
      ? `error: ${error}`
      : list
        ? `${list.project_root} · ${plural(list.runs.length, 'run')}`
        : 'loading…';
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
    const names = new Map<string, number>();
    for (const run of runs) {
      const name = run.job_name || run.run_id;
      names.set(name, (names.get(name) ?? 0) + 1);
    }
    const nodes: HTMLElement[] = [];
    const groups = new Map<string, HTMLElement[]>();
    for (const run of runs) {
      const card = this._card(run, (names.get(run.job_name || run.run_id) ?? 0) > 1);
      const sweep = run.sweep_id;
      if (!sweep) {
        nodes.push(card);
        continue;
      }
      if (!groups.has(sweep)) {
        groups.set(sweep, []);
        nodes.push(this._group(sweep)); // placed where its newest shard is
      }
      groups.get(sweep)!.push(card);
    }
    for (const [sweep, cards] of groups) {
      const group = this._groups.get(sweep)!;
      const live = cards.filter(card => card.classList.contains('pm-live')).length;
      const head = group.querySelector('.pm-sweep-head') as HTMLElement;
      const text = `${sweep} · ${plural(cards.length, 'shard')}${live ? ` · ${live} live` : ''}`;
      if (head.textContent !== text) {
        head.textContent = text;
      }
      const body = group.querySelector('.pm-sweep-body') as HTMLElement;
      if (body.children.length !== cards.length || cards.some((card, i) => body.children[i] !== card)) {
        body.replaceChildren(...cards);
      }
    }
    const current = Array.from(this._body.children);
    if (current.length !== nodes.length || nodes.some((node, i) => current[i] !== node)) {
      this._body.replaceChildren(...nodes);
    }
    const ids = new Set(runs.map(run => run.run_id));
    for (const id of Array.from(this._cards.keys())) {
      if (!ids.has(id)) {
        this._cards.delete(id);
      }
    }
    for (const sweep of Array.from(this._groups.keys())) {
      if (!groups.has(sweep)) {
        this._groups.delete(sweep);
      }
    }
  }

  /** A sweep's group: a heading, then its shards' cards. */
  private _group(sweep: string): HTMLElement {
    let group = this._groups.get(sweep);
    if (!group) {
      group = el('div', 'pm-sweep-group');
      group.dataset.sweepId = sweep;
      group.append(el('div', 'pm-sweep-head'), el('div', 'pm-sweep-body'));
      this._groups.set(sweep, group);
    }
    return group;
  }

  /** A two-line card: name, status and Stop; then backend, GPU, elapsed, cost, exit. */
  private _card(run: IRunRow, nameRepeats: boolean): HTMLElement {
    let card = this._cards.get(run.run_id);
    if (!card) {
      card = el('div', 'pm-run-row');
      card.dataset.runId = run.run_id;
      card.title = run.run_id;
      card.append(el('div', 'pm-run-head'), el('div', 'pm-run-id'), el('div', 'pm-run-meta'));
      for (const [field, label] of runFields(run)) {
        const span = el('span', `pm-field pm-field-${field}`);
        span.dataset.field = field;
        span.dataset.label = label;
        card.children[field === 'name' || field === 'status' ? 0 : 2].append(span);
      }
      this._cards.set(run.run_id, card);
    }
    // Which run is which: the shard's variables in a sweep, the run id where names repeat.
    const id = card.children[1] as HTMLElement;
    const which = [run.shard || (nameRepeats ? run.run_id : ''), reproductionLink(run)].filter(Boolean).join(' · ');
    if (id.textContent !== which) {
      id.textContent = which;
      id.dataset.field = 'id';
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
      delete this._detail.dataset.runId;
      this._detail.replaceChildren(el('div', 'pm-info', `loading ${runId}…`));
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
      const [detail, log, series] = await Promise.all([
        fetchRun(run.run_id),
        fetchLog(run.run_id),
        fetchMetrics(run.run_id).catch(() => null) // sparklines are extra: never fail the detail
      ]);
      if (this._selected === run.run_id) {
        const what = detail.manifest ? 'record' : run.live ? 'live status' : 'status';
        this._fillDetail(run.run_id, `${run.run_id} (${what})`, detail.html, log.html);
        this._fillLinks(detail.path);
        const slot = this._detail.querySelector('.pm-charts');
        if (slot && series) {
          slot.replaceChildren(renderSparklines(series));
        }
      }
    } catch (reason) {
      this._selectedState = undefined; // try again on the next poll
      this._detail.replaceChildren(el('div', 'pm-error', `could not load ${run.run_id}: ${reason}`));
    } finally {
      this._loading = false;
    }
    if (this._selected && this._selected !== run.run_id) {
      this._render(); // the user picked another run while this one loaded
    }
  }

  /**
   * Update the detail in place (the HTML comes from the server extension,
   * which escapes every value); the log follows its end only if it was
   * scrolled there, and an open manifest stays open.
   */
  private _fillDetail(runId: string, title: string, summary: string, logHtml: string): void {
    let pre = this._detail.querySelector('pre.pm-log') as HTMLPreElement | null;
    if (this._detail.dataset.runId !== runId || !pre) {
      pre = el('pre', 'pm-log');
      this._detail.replaceChildren(el('h3', 'pm-title'), el('div', 'pm-record'), el('h3', '', 'Log tail'), pre);
      this._detail.dataset.runId = runId;
    }
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    this._detail.querySelector('.pm-title')!.textContent = title;
    const record = this._detail.querySelector('.pm-record') as HTMLElement;
    if (record.dataset.html !== summary) {
      const open = record.querySelector('details')?.open ?? false;
      record.innerHTML = summary;
      record.dataset.html = summary;
      const details = record.querySelector('details');
      if (details && open) {
        details.open = true;
      }
    }
    if (pre.dataset.html !== logHtml) {
      pre.innerHTML = logHtml;
      pre.dataset.html = logHtml;
      if (atEnd) {
        pre.scrollTop = pre.scrollHeight;
      }
    }
  }

  /** "Open log" and "Show folder" for a run directory under the server's root. */
  private _fillLinks(path: string | undefined): void {
    const root = PageConfig.getOption('serverRoot').replace(/\/+$/, '');
    const rel = path && root && path.startsWith(root + '/') ? path.slice(root.length + 1) : null;
    let links = this._detail.querySelector('.pm-links') as HTMLElement | null;
    if (!rel || !this._run) {
      links?.remove();
      return;
    }
    if (!links || links.dataset.path !== rel) {
      links?.remove();
      links = el('div', 'pm-links');
      links.dataset.path = rel;
      const open = el('button', 'pm-open-log jp-Button', 'Open log');
      open.addEventListener('click', () => this._run!('docmanager:open', { path: `${rel}/run.log` }));
      const folder = el('button', 'pm-open-folder jp-Button', 'Show folder');
      folder.addEventListener('click', () => this._run!('filebrowser:go-to-path', { path: rel }));
      links.append(open, folder);
      this._detail.querySelector('.pm-record')?.after(links);
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
