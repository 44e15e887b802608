/**
 * The run list, polled from the server extension and shared by the Pods
 * panel and the status bar item.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { fetchRuns, IRunList } from './api';

/** Poll interval, in milliseconds: a change shows within a second (listing 200 runs takes about 10 ms). */
export const POLL_MS = 500;

/** Polls `podmagic/runs` and signals each new list. */
export class RunsModel {
  private _list: IRunList | null = null;
  private _error: string | null = null;
  private _changed = new Signal<this, void>(this);
  private _poll: Poll;

  constructor() {
    this._poll = new Poll({
      factory: () => this.refresh(),
      frequency: { interval: POLL_MS, backoff: false },
      standby: 'when-hidden',
      name: 'podmagic:runs'
    });
  }

  /** The last list fetched (null before the first answer). */
  get list(): IRunList | null {
    return this._list;
  }

  /** The last fetch error, if the last fetch failed. */
  get error(): string | null {
    return this._error;
  }

  /** Emitted after every fetch. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Fetch now. */
  async refresh(): Promise<void> {
    try {
      this._list = await fetchRuns();
      this._error = null;
    } catch (reason) {
      this._error = String(reason);
    }
    this._changed.emit();
  }

  /** Stop polling. */
  dispose(): void {
    this._poll.dispose();
  }
}
