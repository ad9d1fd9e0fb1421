// Small SVG charts over time (bars, stacked bars and lines), drawn here rather than with a
// charting library so the console loads nothing from elsewhere.

import { h, svg } from './dom.js';

const W = 560;
const H = 190;
const M = { left: 56, right: 10, top: 10, bottom: 24 };

/** A rounded-up axis maximum: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function clock(unixSeconds) {
  const d = new Date(unixSeconds * 1000);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/**
 * A chart of `series` over `times` (unix seconds, one slot each).
 * series: [{ label, values: [number|null per slot], kind: 'bar' | 'line' }]; bars stack when
 * `stacked`, else stand side by side. `format` writes axis and tooltip values.
 */
export function chart({ id, title, times, series, stacked = false, format = (v) => String(v) }) {
  const n = times.length;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const bars = series.filter((s) => s.kind === 'bar');
  const lines = series.filter((s) => s.kind === 'line');
  let top = 0;
  for (let i = 0; i < n; i++) {
    const barValues = bars.map((s) => s.values[i] || 0);
    top = Math.max(top, stacked ? barValues.reduce((a, b) => a + b, 0) : Math.max(0, ...barValues));
    for (const s of lines) top = Math.max(top, s.values[i] || 0);
  }
  const max = niceMax(top);
  const x = (i) => M.left + (i * plotW) / n;
  const y = (v) => M.top + plotH - (v / max) * plotH;
  const slot = plotW / n;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });

  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    root.append(
      svg('line', { class: 'grid', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }),
      svg('text', { class: 'axis', x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, format(v)),
    );
  }
  const every = Math.max(1, Math.ceil(n / 6));
  for (let i = 0; i < n; i += every) {
    root.append(svg('text', { class: 'axis', x: x(i) + slot / 2, y: H - 6, 'text-anchor': 'middle' }, clock(times[i])));
  }

  const seriesClass = (s) => `s${series.indexOf(s)}`;
  for (let i = 0; i < n; i++) {
    let base = 0;
    bars.forEach((s, b) => {
      const v = s.values[i] || 0;
      if (!v) return;
      const width = stacked ? slot * 0.7 : (slot * 0.8) / bars.length;
      const left = stacked ? x(i) + slot * 0.15 : x(i) + slot * 0.1 + b * width;
      const from = stacked ? base : 0;
      base += v;
      root.append(svg('rect', {
        class: `bar ${seriesClass(s)}`, x: left, width: Math.max(1, width - 1),
        y: y(from + v), height: Math.max(1, y(from) - y(from + v)),
      }, svg('title', {}, `${clock(times[i])} ${s.label}: ${format(v)}`)));
    });
  }
  for (const s of lines) {
    let run = [];
    const flush = () => {
      if (run.length > 1) root.append(svg('polyline', { class: `line ${seriesClass(s)}`, points: run.join(' ') }));
      run = [];
    };
    for (let i = 0; i < n; i++) {
      const v = s.values[i];
      if (v === null || v === undefined) {
        flush();
        continue;
      }
      const cx = x(i) + slot / 2;
      run.push(`${cx},${y(v)}`);
      root.append(svg('circle', { class: `dot ${seriesClass(s)}`, cx, cy: y(v), r: 3 },
        svg('title', {}, `${clock(times[i])} ${s.label}: ${format(v)}`)));
    }
    flush();
  }
  if (!top) {
    root.append(svg('text', { class: 'empty', x: M.left + plotW / 2, y: M.top + plotH / 2, 'text-anchor': 'middle' }, 'nothing yet'));
  }

  const legend = h('span.legend', series.map((s) => h('span', h(`i.swatch.${seriesClass(s)}`), s.label)));
  return h('figure.chart', { dataset: { chart: id } }, h('figcaption', h('b', title), legend), root);
}
