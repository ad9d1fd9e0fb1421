//! Chat chunks in, Responses stream events out, as each chunk arrives (never held back to be
//! merged): `response.created` and `.in_progress` first; then per output item (reasoning, the
//! message, each function call, in the order the provider produced them) its
//! `output_item.added`, its deltas and its `.done` events; `response.completed` (or
//! `.incomplete`, or `.failed` when the upstream broke off) last, with every item and the usage.
//! Every event carries its `sequence_number`, and item events their `output_index` and
//! `item_id`.

use super::answer::{status_of, usage, Shell};
use crate::api::openai::{ChatChunk, ChatUsage, ChunkChoice, ToolCallDelta};
use crate::api::responses::{OutputContent, OutputItem, ResponseError, Sequenced, StreamEvent, SummaryText};
use crate::exchange::ApiError;
use crate::streaming::sse;
use axum::body::Bytes;
use serde_json::Value;
use std::borrow::Cow;

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    /// A function call, for the chat tool call of `chat_index`.
    Call {
        id: String,
        chat_index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// The stream's state.
#[derive(Debug)]
pub struct ResponsesEvents {
    shell: Shell,
    sequence: u64,
    /// Items already done, for the final response.
    done: Vec<OutputItem<'static>>,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Option<ChatUsage>,
}

fn summary(text: String) -> SummaryText {
    SummaryText { kind: Cow::Borrowed("summary_text"), text }
}

impl ResponsesEvents {
    pub fn new(shell: Shell) -> ResponsesEvents {
        ResponsesEvents { shell, sequence: 0, done: Vec::new(), open: None, finish_reason: None, usage: None }
    }

    /// The response's id.
    pub fn id(&self) -> &str {
        &self.shell.id
    }

    fn frame(sequence: &mut u64, event: &StreamEvent<'_>) -> Bytes {
        let sequence_number = *sequence;
        *sequence += 1;
        sse::named(event.name(), &Sequenced { event, sequence_number })
    }

    fn emit(&mut self, event: StreamEvent<'_>, out: &mut Vec<Bytes>) {
        out.push(Self::frame(&mut self.sequence, &event));
    }

    /// `response.created` and `response.in_progress`: sent before the first chunk.
    pub fn start(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        let created = StreamEvent::Created { response: self.shell.response("in_progress", Vec::new(), None) };
        out.push(Self::frame(&mut self.sequence, &created));
        let progress = StreamEvent::InProgress { response: self.shell.response("in_progress", Vec::new(), None) };
        out.push(Self::frame(&mut self.sequence, &progress));
        out
    }

    fn index(&self) -> u64 {
        self.done.len() as u64
    }

    /// The events one chat chunk makes.
    pub fn push(&mut self, chunk: &ChatChunk) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Some(choice) = chunk.choices.first() {
            self.choice(choice, &mut out);
        }
        if let Some(u) = chunk.usage() {
            self.usage = Some(u.clone());
        }
        out
    }

    fn choice(&mut self, choice: &ChunkChoice, out: &mut Vec<Bytes>) {
        let reasoning = choice.delta.extra.get("reasoning_content").and_then(Value::as_str).filter(|t| !t.is_empty());
        if let Some(piece) = reasoning {
            if !matches!(self.open, Some(Open::Reasoning { .. })) {
                self.open_reasoning(out);
            }
            self.reasoning_delta(piece, out);
        }
        if let Some(piece) = choice.delta.content.as_ref().and_then(Option::as_deref).filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some(Open::Message { .. })) {
                self.open_message(out);
            }
            self.text_delta(piece, out);
        }
        for call in choice.delta.tool_calls.iter().flatten() {
            self.tool_call(call, out);
        }
        if let Some(reason) = &choice.finish_reason {
            self.finish_reason = Some(reason.clone());
        }
    }

    fn open_reasoning(&mut self, out: &mut Vec<Bytes>) {
        self.close(out);
        let (output_index, id) = (self.index(), self.shell.item_id("rs", self.done.len()));
        let item = OutputItem::Reasoning { id: Cow::Borrowed(&id), summary: Vec::new(), encrypted_content: None };
        self.emit(StreamEvent::OutputItemAdded { output_index, item }, out);
        let part = StreamEvent::ReasoningSummaryPartAdded {
            item_id: Cow::Borrowed(&id),
            output_index,
            summary_index: 0,
            part: summary(String::new()),
        };
        self.emit(part, out);
        self.open = Some(Open::Reasoning { id, text: String::new() });
    }

    fn reasoning_delta(&mut self, piece: &str, out: &mut Vec<Bytes>) {
        let output_index = self.index();
        let Some(Open::Reasoning { id, text }) = &mut self.open else { return };
        text.push_str(piece);
        let event = StreamEvent::ReasoningSummaryTextDelta {
            item_id: Cow::Borrowed(id),
            output_index,
            summary_index: 0,
            delta: Cow::Borrowed(piece),
        };
        out.push(Self::frame(&mut self.sequence, &event));
    }

    fn open_message(&mut self, out: &mut Vec<Bytes>) {
        self.close(out);
        let (output_index, id) = (self.index(), self.shell.item_id("msg", self.done.len()));
        let item = OutputItem::Message {
            id: Cow::Borrowed(&id),
            status: "in_progress",
            role: "assistant",
            content: Vec::new(),
        };
        self.emit(StreamEvent::OutputItemAdded { output_index, item }, out);
        let part = StreamEvent::ContentPartAdded {
            item_id: Cow::Borrowed(&id),
            output_index,
            content_index: 0,
            part: OutputContent::text(""),
        };
        self.emit(part, out);
        self.open = Some(Open::Message { id, text: String::new() });
    }

    fn text_delta(&mut self, piece: &str, out: &mut Vec<Bytes>) {
        let output_index = self.index();
        let Some(Open::Message { id, text }) = &mut self.open else { return };
        text.push_str(piece);
        let event = StreamEvent::OutputTextDelta {
            item_id: Cow::Borrowed(id),
            output_index,
            content_index: 0,
            delta: Cow::Borrowed(piece),
            logprobs: [],
        };
        out.push(Self::frame(&mut self.sequence, &event));
    }

    /// A piece of a tool call: one with an id, or of another index, starts a new function call.
    fn tool_call(&mut self, call: &ToolCallDelta, out: &mut Vec<Bytes>) {
        let continues = matches!(&self.open, Some(Open::Call { chat_index, call_id, .. })
            if *chat_index == call.index && call.id.as_deref().is_none_or(|id| id == call_id));
        if !continues {
            self.close(out);
            let output_index = self.index();
            let id = self.shell.item_id("fc", self.done.len());
            let call_id = call.id.clone().unwrap_or_else(|| format!("call_{}", id.trim_start_matches("fc_")));
            let name = call.function.as_ref().and_then(|f| f.name.clone()).unwrap_or_default();
            let item = self.shell.function_call(id.clone(), &call_id, &name, Cow::Borrowed(""), "in_progress");
            out.push(Self::frame(&mut self.sequence, &StreamEvent::OutputItemAdded { output_index, item }));
            self.open = Some(Open::Call { id, chat_index: call.index, call_id, name, arguments: String::new() });
        }
        let piece = call.function.as_ref().and_then(|f| f.arguments.as_deref()).filter(|a| !a.is_empty());
        let output_index = self.index();
        if let (Some(piece), Some(Open::Call { id, arguments, .. })) = (piece, &mut self.open) {
            arguments.push_str(piece);
            let event = StreamEvent::FunctionCallArgumentsDelta {
                item_id: Cow::Borrowed(id),
                output_index,
                delta: Cow::Borrowed(piece),
            };
            out.push(Self::frame(&mut self.sequence, &event));
        }
    }

    /// The `.done` events of the open item; it joins the finished ones.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some(open) = self.open.take() else { return };
        let output_index = self.index();
        let item: OutputItem<'static> = match open {
            Open::Reasoning { id, text } => {
                let item_id = Cow::Borrowed(id.as_str());
                let events = [
                    StreamEvent::ReasoningSummaryTextDone {
                        item_id: item_id.clone(),
                        output_index,
                        summary_index: 0,
                        text: Cow::Borrowed(&text),
                    },
                    StreamEvent::ReasoningSummaryPartDone {
                        item_id,
                        output_index,
                        summary_index: 0,
                        part: summary(text.clone()),
                    },
                ];
                for event in &events {
                    out.push(Self::frame(&mut self.sequence, event));
                }
                OutputItem::Reasoning { id: Cow::Owned(id), summary: vec![summary(text)], encrypted_content: None }
            }
            Open::Message { id, text } => {
                let item_id = Cow::Borrowed(id.as_str());
                let events = [
                    StreamEvent::OutputTextDone {
                        item_id: item_id.clone(),
                        output_index,
                        content_index: 0,
                        text: Cow::Borrowed(&text),
                        logprobs: [],
                    },
                    StreamEvent::ContentPartDone {
                        item_id,
                        output_index,
                        content_index: 0,
                        part: OutputContent::text(text.as_str()),
                    },
                ];
                for event in &events {
                    out.push(Self::frame(&mut self.sequence, event));
                }
                let content = vec![OutputContent::text(text)];
                OutputItem::Message { id: Cow::Owned(id), status: "completed", role: "assistant", content }
            }
            Open::Call { id, call_id, name, arguments, .. } => {
                let done = StreamEvent::FunctionCallArgumentsDone {
                    item_id: Cow::Borrowed(&id),
                    output_index,
                    arguments: Cow::Borrowed(&arguments),
                };
                out.push(Self::frame(&mut self.sequence, &done));
                let (namespace, plain) = self.shell.names.split(&name);
                OutputItem::FunctionCall {
                    id: Cow::Owned(id),
                    call_id: Cow::Owned(call_id),
                    name: Cow::Owned(plain.to_owned()),
                    arguments: Cow::Owned(arguments),
                    status: "completed",
                    namespace: namespace.map(|n| Cow::Owned(n.to_owned())),
                }
            }
        };
        let event = StreamEvent::OutputItemDone { output_index, item: item.clone() };
        out.push(Self::frame(&mut self.sequence, &event));
        self.done.push(item);
    }

    /// The closing events: the open item's, then `response.completed` (or `.incomplete`).
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.close(&mut out);
        let (status, incomplete) = status_of(self.finish_reason.as_deref());
        let mut response = self.shell.response(status, self.done.clone(), self.usage.as_ref().map(usage));
        response.incomplete_details = incomplete;
        let event = if status == "completed" {
            StreamEvent::Completed { response }
        } else {
            StreamEvent::Incomplete { response }
        };
        out.push(Self::frame(&mut self.sequence, &event));
        out
    }

    /// The stream broke off: the open item is closed as it stands, then `response.failed`
    /// says why.
    pub fn fail(&mut self, e: &ApiError) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.close(&mut out);
        let mut response = self.shell.response("failed", self.done.clone(), self.usage.as_ref().map(usage));
        let code = e.code.as_deref().unwrap_or(e.kind);
        response.error = Some(ResponseError { code: Cow::Borrowed(code), message: Cow::Borrowed(&e.message) });
        out.push(Self::frame(&mut self.sequence, &StreamEvent::Failed { response }));
        out
    }
}
