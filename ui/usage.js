// Usage and spend of a session, per deployment or all together: totals, then charts of the
// per-minute history `get_usage` keeps (requests, errors, latency percentiles, tokens, cost).

import * as api from './api.js';
import { h, fill, notice, formatNumber, formatUsd } from './dom.js';
import { chart } from './chart.js';
import { sessionPicker } from './sessions.js';

const POLL_MS = 3000;
/** Minutes shown at least (more when the history is longer). */
const WINDOW_MINUTES = 30;

export default function usage(main, params) {
  const status = h('div.status');
  const tiles = h('div.tiles#usage-totals');
  const charts = h('div.charts');
  const table = h('div');
  const deployment = h('select#deployment', { onchange: () => draw() });
  let session = null;
  let report = null;
  let timer = null;
  let stopped = false;

  const picker = sessionPicker(params, 'usage', (s) => {
    session = s;
    report = null;
    clearTimeout(timer);
    if (session) poll();
    else notice(status, 'info', 'No running session: start an app to see its usage.');
  });
  fill(main,
    h('section.view',
      h('div.head', h('h1', 'Usage and spend'), picker.element, h('label.picker', 'Deployment ', deployment)),
      status, tiles, charts, h('h2', 'Per deployment'), table,
    ),
  );

  async function poll() {
    const polled = session;
    try {
      const fresh = await api.call('get_usage', { session_id: polled.id });
      if (stopped || polled !== session) return;
      notice(status);
      const options = ['', ...fresh.deployments.map((d) => d.deployment)];
      if ([...deployment.options].map((o) => o.value).join('\n') !== options.join('\n')) {
        const keep = deployment.value;
        fill(deployment, options.map((v) => h('option', { value: v }, v || 'all deployments')));
        deployment.value = options.includes(keep) ? keep : '';
      }
      report = fresh;
      draw();
    } catch (e) {
      if (stopped || polled !== session) return;
      notice(status, 'error', e.message);
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function draw() {
    if (!report) return;
    const chosen = report.deployments.find((d) => d.deployment === deployment.value);
    const totals = chosen || report.deployments.reduce((t, d) => ({
      requests: t.requests + d.requests, errors: t.errors + d.errors,
      prompt_tokens: t.prompt_tokens + d.prompt_tokens, completion_tokens: t.completion_tokens + d.completion_tokens,
    }), { requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0 });
    const spend = chosen ? chosen.spend : report.spend;
    fill(tiles,
      tile('requests', 'Requests', formatNumber(totals.requests)),
      tile('errors', 'Errors', formatNumber(totals.errors)),
      tile('prompt-tokens', 'Tokens in', formatNumber(totals.prompt_tokens)),
      tile('completion-tokens', 'Tokens out', formatNumber(totals.completion_tokens)),
      tile('spend', 'Spend', formatUsd(spend)),
    );

    const buckets = chosen ? chosen.history : report.history.app;
    const step = report.history.bucket_seconds;
    const now = Math.floor(Date.now() / 1000 / step) * step;
    const first = buckets.length ? Math.min(buckets[0].start, now) : now;
    const from = Math.min(first, now - (WINDOW_MINUTES - 1) * step);
    const times = [];
    for (let t = from; t <= now; t += step) times.push(t);
    const at = new Map(buckets.map((b) => [b.start, b]));
    const pick = (f) => times.map((t) => (at.has(t) ? f(at.get(t)) : null));
    const count = (f) => times.map((t) => (at.has(t) ? f(at.get(t)) : 0));
    const ms = (v) => (v >= 1000 ? `${(v / 1000).toFixed(1)}s` : `${+v.toPrecision(3)}ms`);
    fill(charts,
      chart({ id: 'requests', title: 'Requests per minute', times, series: [
        { label: 'requests', kind: 'bar', values: count((b) => b.requests) },
        { label: 'errors', kind: 'bar', values: count((b) => b.errors) },
      ], format: compact }),
      chart({ id: 'latency', title: 'Latency', times, format: ms, series: [
        { label: 'p50', kind: 'line', values: pick((b) => b.latency_ms.p50) },
        { label: 'p95', kind: 'line', values: pick((b) => b.latency_ms.p95) },
        { label: 'p99', kind: 'line', values: pick((b) => b.latency_ms.p99) },
      ] }),
      chart({ id: 'tokens', title: 'Tokens per minute', times, stacked: true, format: compact, series: [
        { label: 'in (prompt)', kind: 'bar', values: count((b) => b.prompt_tokens) },
        { label: 'out (completion)', kind: 'bar', values: count((b) => b.completion_tokens) },
      ] }),
      chart({ id: 'cost', title: 'Cost per minute', times, format: formatUsd, series: [
        { label: 'USD', kind: 'bar', values: count((b) => b.cost) },
      ] }),
    );

    fill(table, h('table.list',
      h('thead', h('tr', ['Deployment', 'Provider', 'Model', 'Requests', 'Errors', 'Tokens in', 'Tokens out', 'In flight', 'Spend', 'Budget']
        .map((c) => h('th', c)))),
      h('tbody', report.deployments.map((d) => h('tr', { dataset: { deployment: d.deployment } },
        h('td', h('code', d.deployment)), h('td', d.provider), h('td', d.model),
        h('td.num', formatNumber(d.requests)), h('td.num', formatNumber(d.errors)),
        h('td.num', formatNumber(d.prompt_tokens)), h('td.num', formatNumber(d.completion_tokens)),
        h('td.num', formatNumber(d.in_flight)), h('td.num', formatUsd(d.spend)),
        h('td', d.budget ? formatUsd(d.budget.max_budget) : '—'),
      ))),
    ));
  }

  picker.load().catch((e) => notice(status, 'error', e.message));
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function tile(id, label, value) {
  return h('div.tile', { dataset: { tile: id } }, h('span.label', label), h('span.value', value));
}

function compact(v) {
  if (v >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}
