/**
 * Sparklines of a run's GPU use and of each numeric metric its job wrote,
 * from `GET podmagic/runs/<id>/metrics` (podmagic/ui/charts.py:series_payload).
 * Plain SVG built as DOM nodes (no innerHTML of server text); colours are
 * the same CSS variables as the notebook charts, so they follow the theme.
 */
import { requestAPI } from './api';

/** Series as the server sends them: name -> [[x, y], ...], already thinned. */
export type Series = Record<string, [number, number][]>;

export interface IMetricSeries {
  run_id: string;
  gpu: Series;
  x: string;
  metrics: Series;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const PALETTE = [
  'var(--podmagic-chart-1, var(--jp-brand-color1, #1f77b4))',
  'var(--podmagic-chart-2, var(--jp-warn-color1, #e36209))',
  'var(--podmagic-chart-3, var(--jp-success-color1, #2da44e))',
  'var(--podmagic-chart-4, var(--jp-error-color1, #cf222e))',
  'var(--podmagic-chart-5, var(--jp-accent-color1, #8250df))',
  'var(--podmagic-chart-6, var(--jp-info-color1, #0598bc))'
];

/** One run's series (the panel asks for the selected run only). */
export function fetchMetrics(
  runId: string,
  points = 120
): Promise<IMetricSeries> {
  return requestAPI<IMetricSeries>(
    `runs/${encodeURIComponent(runId)}/metrics?points=${points}`
  );
}

/** The SVG path of points scaled into width x height (null with < 2 points). */
export function sparkPath(
  points: [number, number][],
  width: number,
  height: number,
  range?: [number, number]
): string | null {
  const finite = points.filter(
    ([x, y]) => Number.isFinite(x) && Number.isFinite(y)
  );
  if (finite.length < 2) {
    return null;
  }
  const ys = finite.map(p => p[1]);
  const [y0, y1] = range ?? [Math.min(...ys), Math.max(...ys)];
  const x0 = finite[0][0];
  const xSpan = finite[finite.length - 1][0] - x0 || 1;
  const ySpan = y1 - y0 || 1;
  return (
    'M' +
    finite
      .map(([x, y]) => {
        const px = ((x - x0) / xSpan) * (width - 2) + 1;
        const clamped = Math.min(Math.max(y, y0), y1);
        const py = height - 1 - ((clamped - y0) / ySpan) * (height - 2);
        return `${px.toFixed(1)},${py.toFixed(1)}`;
      })
      .join('L')
  );
}

/** A sparkline element, or null when there is nothing to draw. */
export function sparkline(
  points: [number, number][],
  index: number,
  title: string,
  range?: [number, number],
  width = 120,
  height = 24
): SVGSVGElement | null {
  const d = sparkPath(points, width, height, range);
  if (d === null) {
    return null;
  }
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.classList.add('podmagic-sparkline');
  const tip = document.createElementNS(SVG_NS, 'title');
  tip.textContent = title;
  svg.appendChild(tip);
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', d);
  path.setAttribute(
    'style',
    `fill:none;stroke:${PALETTE[index % PALETTE.length]};stroke-width:1.2`
  );
  svg.appendChild(path);
  return svg;
}

function last(points: [number, number][]): string {
  const value = points.length ? points[points.length - 1][1] : NaN;
  return Number.isFinite(value) ? String(Number(value.toPrecision(4))) : '';
}

/** The panel's block: one labelled sparkline per GPU series and job metric. */
export function renderSparklines(data: IMetricSeries): HTMLElement {
  const box = document.createElement('div');
  box.className = 'podmagic-sparklines';
  type Row = {
    name: string;
    points: [number, number][];
    x: string;
    range?: [number, number];
  };
  const rows: Row[] = [
    ...Object.entries(data.gpu).map(([name, points]) => ({
      name,
      points,
      x: 'seconds',
      range: [0, 100] as [number, number]
    })),
    ...Object.entries(data.metrics).map(([name, points]) => ({
      name,
      points,
      x: data.x
    }))
  ];
  rows.forEach((r, i) => {
    const line = sparkline(r.points, i, `${r.name} vs ${r.x}`, r.range);
    if (line === null) {
      return;
    }
    const row = document.createElement('div');
    row.className = 'podmagic-sparkline-row';
    const label = document.createElement('span');
    label.className = 'podmagic-sparkline-label';
    label.textContent = r.name;
    const value = document.createElement('span');
    value.className = 'podmagic-sparkline-value';
    value.textContent = last(r.points);
    row.append(label, line, value);
    box.appendChild(row);
  });
  return box;
}
