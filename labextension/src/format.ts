/** Small formatters shared by the panel and the status bar. */

/** `1h02m`, `3m05s`, `12s`, or an em dash. */
export function formatElapsed(sec: number | null | undefined): string {
  if (typeof sec !== 'number' || !isFinite(sec)) {
    return '—';
  }
  const s = Math.floor(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h) {
    return `${h}h${String(m).padStart(2, '0')}m`;
  }
  return m ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

/** `$0.42`, or an em dash. */
export function formatUsd(usd: number | null | undefined, digits = 2): string {
  return typeof usd === 'number' && isFinite(usd) ? `$${usd.toFixed(digits)}` : '—';
}

/** A value for a table cell. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return '—';
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** A DOM element with a class and optional text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** `1 run`, `3 runs`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
