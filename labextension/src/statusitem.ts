/** The status bar item: live pods and their summed $/hour. */
import { Widget } from '@lumino/widgets';

import { formatUsd } from './format';
import { RunsModel } from './model';

/** `Pods: 2 · $1.38/h`, refreshed with the run list. */
export class PodsStatusItem extends Widget {
  constructor(private _model: RunsModel, onClick: () => void) {
    super();
    this.addClass('pm-StatusItem');
    this.addClass('jp-StatusBar-TextItem');
    this.node.title = 'Live podmagic pods and their summed hourly price';
    this.node.addEventListener('click', onClick);
    _model.changed.connect(this._render, this);
    this._render();
  }

  private _render(): void {
    const list = this._model.list;
    const count = list?.live_count ?? 0;
    this.node.dataset.liveCount = String(count);
    this.node.classList.toggle('pm-has-live', count > 0);
    this.node.textContent = `Pods: ${count} · ${formatUsd(list?.live_usd_per_hour ?? 0)}/h`;
  }
}
