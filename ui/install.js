// Install from a manifest typed or pasted into an editor. Each edit is checked by the server's
// own validator (the controller's `validate`, which stores nothing), so the page and `install`
// never disagree; every error is listed with its JSON path and marked on its line.

import * as api from './api.js';
import { h, fill, notice } from './dom.js';
import { spans, locate, lineOf } from './locate.js';

/** Quiet time after a keystroke before the manifest is sent for checking. */
const DEBOUNCE_MS = 250;

const EXAMPLE = {
  name: 'Mock LLM Proxy',
  type: 'llm-proxy',
  version: '1.0.0',
  description: 'Models that answer without any provider key.',
  config: {
    service_id: 'mock-llm',
    model_list: [
      {
        model_name: 'mock-chat',
        litellm_params: { model: 'gpt-4o-mini', mock_response: 'Hello from the mock model! Streams arrive word by word.' },
      },
    ],
    litellm_settings: { routing_strategy: 'simple-shuffle', num_retries: 2 },
  },
};

/** The last text typed, kept while the tab lives so leaving the view loses nothing. */
let draft = '';

export default function install(main) {
  const editor = h('textarea#manifest', { spellcheck: false, wrap: 'off', placeholder: 'Type or paste a manifest (JSON or YAML)…' });
  const gutter = h('div.gutter', { 'aria-hidden': 'true' });
  const verdict = h('div#verdict.verdict');
  const errorList = h('ul#errors.findings');
  const status = h('div.status');
  const overwrite = h('input#overwrite', { type: 'checkbox' });
  const installButton = h('button#install.primary', { type: 'button', disabled: true, onclick: doInstall }, 'Install');
  const example = h('button', { type: 'button', onclick: () => setText(JSON.stringify(EXAMPLE, null, 2)) }, 'Insert an example');

  fill(main,
    h('section.view',
      h('div.head', h('h1', 'Install an app'), example),
      h('p.hint', 'A manifest in JSON or YAML (or a litellm config). Errors show at their JSON path as you type.'),
      h('div.editor-grid',
        h('div.editor', gutter, editor),
        h('aside.checks', verdict, errorList,
          h('div.install-row', h('label.check', overwrite, ' overwrite an app with the same id'), installButton),
          status),
      ),
    ),
  );

  let sequence = 0; // answers to older edits are ignored
  let timer = null;
  let marks = new Map(); // line -> messages

  function setText(text) {
    editor.value = text;
    changed();
    editor.focus();
  }

  function changed() {
    draft = editor.value;
    drawGutter();
    clearTimeout(timer);
    timer = setTimeout(validate, DEBOUNCE_MS);
  }

  function drawGutter() {
    const lines = editor.value.split('\n').length;
    fill(gutter, Array.from({ length: lines }, (_, n) => {
      const messages = marks.get(n + 1);
      return h(messages ? 'div.line.bad' : 'div.line', { title: messages ? messages.join('\n') : null }, n + 1);
    }));
    gutter.scrollTop = editor.scrollTop;
  }

  async function validate() {
    const text = editor.value;
    const mine = ++sequence;
    if (!text.trim()) {
      marks = new Map();
      drawGutter();
      fill(verdict, h('span.muted', 'Empty: type a manifest or insert the example.'));
      fill(errorList);
      installButton.disabled = true;
      return;
    }
    fill(verdict, h('span.muted', 'Checking…'));
    let result;
    try {
      result = await api.call('validate', { source: text });
    } catch (e) {
      if (mine === sequence) fill(verdict, h('span.bad', `Could not check: ${e.message}`));
      return;
    }
    if (mine !== sequence) return;
    show(text, result);
  }

  function show(text, result) {
    const found = spans(text);
    marks = new Map();
    const items = [];
    for (const [severity, list] of [['error', result.errors], ['warning', result.warnings]]) {
      for (const finding of list) {
        const where = locate(text, finding.path, finding.message, found);
        if (where) {
          const line = lineOf(text, where.start);
          marks.set(line, [...(marks.get(line) || []), `${finding.path || '/'}: ${finding.message}`]);
        }
        items.push(h(`li.${severity}`, {
          dataset: { path: finding.path || '/' },
          tabindex: 0,
          title: where ? 'Show in the editor' : null,
          onclick() {
            if (!where) return;
            editor.focus();
            editor.setSelectionRange(where.start, where.end);
          },
        },
        h('code.path', finding.path || '/'),
        h('span.message', finding.message),
        where ? h('span.at', `line ${lineOf(text, where.start)}`) : null));
      }
    }
    drawGutter();
    fill(errorList, items);
    const n = result.errors.length;
    fill(verdict, result.valid
      ? h('span.good', `Valid${result.warnings.length ? ` (${result.warnings.length} warning${result.warnings.length > 1 ? 's' : ''})` : ''}`)
      : h('span.bad', `${n} error${n > 1 ? 's' : ''}`));
    installButton.disabled = !result.valid;
  }

  async function doInstall() {
    installButton.disabled = true;
    try {
      const info = await api.call('install', { source: editor.value, overwrite: overwrite.checked });
      const start = h('button.primary', {
        type: 'button',
        async onclick() {
          start.disabled = true;
          try {
            const session = await api.call('start', { app_id: info.id });
            location.hash = `#/playground?session=${encodeURIComponent(session.id)}`;
          } catch (e) {
            notice(status, 'error', `start failed: ${e.message}`);
          }
        },
      }, 'Start it');
      fill(status, h('p.notice.ok', { role: 'status' }, `Installed ${info.id} (models: ${info.models.join(', ')}). `, start, ' ', h('a', { href: '#/apps' }, 'See the apps')));
    } catch (e) {
      notice(status, 'error', `install failed: ${e.message}`);
    } finally {
      installButton.disabled = false;
    }
  }

  editor.addEventListener('input', changed);
  editor.addEventListener('scroll', () => {
    gutter.scrollTop = editor.scrollTop;
  });
  // Tab indents rather than leaving the editor.
  editor.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab' || event.shiftKey) return;
    event.preventDefault();
    editor.setRangeText('  ', editor.selectionStart, editor.selectionEnd, 'end');
    changed();
  });
  editor.value = draft;
  changed();
  return () => clearTimeout(timer);
}
