// The playground: pick a model of a running app, send a chat, watch the answer stream in.
// It calls the service's /v1/chat/completions with `stream: true` like any OpenAI client.

import * as api from './api.js';
import { h, fill, notice, formatUsd } from './dom.js';
import { events } from './sse.js';
import { sessionPicker } from './sessions.js';

export default function playground(main, params) {
  const status = h('div.status');
  const model = h('select#model');
  const system = h('input#system', { type: 'text', placeholder: 'optional system prompt' });
  const message = h('textarea#message', { rows: 3, placeholder: 'Say something to the model…' });
  const stream = h('input#stream', { type: 'checkbox', checked: true });
  const send = h('button#send.primary', { type: 'submit' }, 'Send');
  const stop = h('button#stop', { type: 'button', disabled: true, onclick: () => controller?.abort() }, 'Stop');
  const clear = h('button.quiet', { type: 'button', onclick: () => reset() }, 'New chat');
  const transcript = h('div#transcript.transcript');
  let session = null;
  let history = [];
  let controller = null;

  const picker = sessionPicker(params, 'playground', (s) => {
    session = s;
    fill(model, s ? s.models.map((m) => h('option', { value: m }, m)) : h('option', { value: '' }, '—'));
    if (!s) notice(status, 'info', 'No running session: start an app to chat with its models.');
    reset();
  });

  const form = h('form.composer', {
    onsubmit(event) {
      event.preventDefault();
      if (!session || !model.value || !message.value.trim() || controller) return;
      chat(message.value.trim());
      message.value = '';
    },
  }, message, h('div.row', h('label.check', stream, ' stream'), stop, send));
  message.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });

  fill(main,
    h('section.view',
      h('div.head', h('h1', 'Playground'), picker.element, h('label.picker', 'Model ', model), clear),
      h('label.wide', 'System ', system),
      status, transcript, form,
    ),
  );

  function reset() {
    controller?.abort();
    history = [];
    fill(transcript);
  }

  function bubble(role, text) {
    const body = h('div.text', text);
    const meta = h('div.meta');
    const el = h(`div.msg.${role}`, h('div.role', role), body, meta);
    transcript.append(el);
    transcript.scrollTop = transcript.scrollHeight;
    return { el, body, meta };
  }

  async function chat(text) {
    notice(status);
    history.push({ role: 'user', content: text });
    bubble('user', text);
    const answer = bubble('assistant', '');
    answer.el.classList.add('streaming');
    const messages = system.value.trim() ? [{ role: 'system', content: system.value.trim() }, ...history] : history;
    const body = { model: model.value, messages };
    if (stream.checked) Object.assign(body, { stream: true, stream_options: { include_usage: true } });
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    const started = performance.now();
    let firstToken = null;
    let chunks = 0;
    let content = '';
    let usage = null;
    try {
      const response = await api.check(await api.post(api.servicePath(session, '/chat/completions'), body, controller.signal));
      const deployment = response.headers.get('x-ferrolite-deployment');
      if (stream.checked) {
        for await (const event of events(response)) {
          if (event.data === '[DONE]') break;
          const data = JSON.parse(event.data);
          if (event.event === 'error' || data.error) throw new Error(data.error?.message || 'the stream ended with an error');
          if (data.usage) usage = data.usage;
          const delta = data.choices?.[0]?.delta?.content;
          if (delta) {
            firstToken ??= performance.now();
            chunks += 1;
            content += delta;
            answer.body.textContent = content;
            answer.el.dataset.chunks = String(chunks);
            transcript.scrollTop = transcript.scrollHeight;
          }
        }
      } else {
        const data = await response.json();
        content = data.choices?.[0]?.message?.content ?? '';
        usage = data.usage;
        answer.body.textContent = content;
      }
      history.push({ role: 'assistant', content });
      const cost = response.headers.get('x-ferrolite-cost');
      const parts = [
        deployment && `deployment ${deployment}`,
        firstToken && `first token ${Math.round(firstToken - started)} ms`,
        `${Math.round(performance.now() - started)} ms`,
        stream.checked && `${chunks} chunks`,
        usage && `tokens ${usage.prompt_tokens} in / ${usage.completion_tokens} out`,
        cost && formatUsd(Number(cost)),
      ];
      answer.meta.textContent = parts.filter(Boolean).join(' · ');
      answer.el.dataset.done = 'yes';
    } catch (e) {
      history.pop();
      answer.el.classList.add('failed');
      answer.meta.textContent = e.name === 'AbortError' ? 'stopped' : e.message;
      if (e.name !== 'AbortError') notice(status, 'error', e.message);
    } finally {
      answer.el.classList.remove('streaming');
      controller = null;
      send.disabled = false;
      stop.disabled = true;
    }
  }

  picker.load().catch((e) => notice(status, 'error', e.message));
  return () => controller?.abort();
}
