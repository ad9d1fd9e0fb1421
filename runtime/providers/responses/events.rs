//! Chat chunks in, Responses stream events out, as each chunk arrives (never held back to be
//! merged): `response.created` and `.in_progress` first; then per output item (reasoning, the
//! message, each function call, in the order the provider produced them) its
//! `output_item.added`, its deltas and its `.done` events; `response.completed` (or
//! `.incomplete`, or `.failed` when the upstream broke off) last, with every item and the usage.
//! Every event carries its `sequence_number`, and item events their `output_index` and
//! `item_id`.
//!
//! Reasoning is one item per block of thinking: its text streams as summary deltas (one per
//! upstream piece), the block's signature closes it (the next thinking opens another item),
//! and its `.done` carries the blocks sealed as `encrypted_content`, as a whole answer's do.

use super::answer::{status_of, usage, Shell};
use super::delta_frames::DeltaFrames;
use crate::api::openai::{ChatChunk, ChatUsage, ChunkChoice, ThinkingBlock, ToolCallDelta};
use crate::api::responses::{OutputContent, OutputItem, ResponseError, Sequenced, StreamEvent, SummaryText};
use crate::exchange::ApiError;
use crate::streaming::sse;
use axum::body::Bytes;
use std::borrow::Cow;

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Reasoning {
        id: String,
        /// The summary so far, and whether its part has been opened.
        text: String,
        part: bool,
        /// The text of the block being signed, from its pieces.
        block: String,
        /// The blocks to hand back; once one is signed, the item is complete.
        blocks: Vec<ThinkingBlock>,
    },
    Message {
        id: String,
        text: String,
        deltas: DeltaFrames,
    },
    /// A function call, for the chat tool call of `chat_index`.
    Call {
        id: String,
        chat_index: u32,
        call_id: String,
        name: String,
        arguments: String,
        deltas: DeltaFrames,
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

/// The stream's next sequence number, taken.
fn next(sequence: &mut u64) -> u64 {
    let taken = *sequence;
    *sequence += 1;
    taken
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
        sse::named(event.name(), &Sequenced { event, sequence_number: next(sequence) })
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
        if let Some(piece) = choice.delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
            self.reasoning_delta(piece, out);
        }
        for block in choice.delta.thinking_blocks.iter().flatten() {
            self.thinking_block(block, out);
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

    /// The reasoning item thinking goes on: the open one, unless a signature completed it.
    fn reasoning(&mut self, out: &mut Vec<Bytes>) {
        if matches!(&self.open, Some(Open::Reasoning { blocks, .. }) if blocks.is_empty()) {
            return;
        }
        self.close(out);
        let (output_index, id) = (self.index(), self.shell.item_id("rs", self.done.len()));
        let item = OutputItem::Reasoning { id: Cow::Borrowed(&id), summary: Vec::new(), encrypted_content: None };
        self.emit(StreamEvent::OutputItemAdded { output_index, item }, out);
        self.open =
            Some(Open::Reasoning { id, text: String::new(), part: false, block: String::new(), blocks: Vec::new() });
    }

    fn reasoning_delta(&mut self, piece: &str, out: &mut Vec<Bytes>) {
        self.reasoning(out);
        let output_index = self.index();
        let Some(Open::Reasoning { id, text, part, .. }) = &mut self.open else { return };
        if !*part {
            *part = true;
            let added = StreamEvent::ReasoningSummaryPartAdded {
                item_id: Cow::Borrowed(id),
                output_index,
                summary_index: 0,
                part: summary(String::new()),
            };
            out.push(Self::frame(&mut self.sequence, &added));
        }
        text.push_str(piece);
        let event = StreamEvent::ReasoningSummaryTextDelta {
            item_id: Cow::Borrowed(id),
            output_index,
            summary_index: 0,
            delta: Cow::Borrowed(piece),
        };
        out.push(Self::frame(&mut self.sequence, &event));
    }

    /// A piece of a block of thinking: its text (kept to sign), its signature (which completes
    /// the item), or a whole redacted block (an item of its own).
    fn thinking_block(&mut self, piece: &ThinkingBlock, out: &mut Vec<Bytes>) {
        match piece {
            ThinkingBlock::Thinking { thinking, signature: None } => {
                if let Some(Open::Reasoning { block, blocks, .. }) = &mut self.open {
                    if blocks.is_empty() {
                        block.push_str(thinking);
                    }
                }
            }
            ThinkingBlock::Thinking { thinking, signature: Some(signature) } => {
                self.reasoning(out);
                if let Some(Open::Reasoning { block, blocks, .. }) = &mut self.open {
                    block.push_str(thinking);
                    blocks.push(ThinkingBlock::signed(std::mem::take(block), signature.clone()));
                }
            }
            ThinkingBlock::RedactedThinking { .. } => {
                if matches!(&self.open, Some(Open::Reasoning { text, block, .. }) if !text.is_empty() || !block.is_empty())
                {
                    self.close(out);
                }
                self.reasoning(out);
                if let Some(Open::Reasoning { blocks, .. }) = &mut self.open {
                    blocks.push(piece.clone());
                }
            }
            ThinkingBlock::Other(_) => {}
        }
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
        let deltas = DeltaFrames::text(&id, output_index);
        self.open = Some(Open::Message { id, text: String::new(), deltas });
    }

    fn text_delta(&mut self, piece: &str, out: &mut Vec<Bytes>) {
        let Some(Open::Message { text, deltas, .. }) = &mut self.open else { return };
        text.push_str(piece);
        out.push(deltas.frame(piece, next(&mut self.sequence)));
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
            let deltas = DeltaFrames::arguments(&id, output_index);
            self.open =
                Some(Open::Call { id, chat_index: call.index, call_id, name, arguments: String::new(), deltas });
        }
        let piece = call.function.as_ref().and_then(|f| f.arguments.as_deref()).filter(|a| !a.is_empty());
        if let (Some(piece), Some(Open::Call { arguments, deltas, .. })) = (piece, &mut self.open) {
            arguments.push_str(piece);
            out.push(deltas.frame(piece, next(&mut self.sequence)));
        }
    }

    /// The `.done` events of the open item; it joins the finished ones.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some(open) = self.open.take() else { return };
        let output_index = self.index();
        let item: OutputItem<'static> = match open {
            Open::Reasoning { id, text, part, blocks, .. } => {
                if part {
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
                }
                self.shell.reasoning(id, text, &blocks)
            }
            Open::Message { id, text, .. } => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::responses::ResponsesRequest;
    use crate::providers::responses::reasoning;
    use serde_json::{json, Value};

    fn events_of(deltas: &[Value]) -> Vec<Value> {
        let req: ResponsesRequest =
            serde_json::from_value(json!({"model": "m", "input": "hi", "stream": true})).unwrap();
        let shell = Shell::new(&req, &json!({}), Default::default(), "m", "claude");
        let mut events = ResponsesEvents::new(shell);
        let mut frames = events.start();
        for delta in deltas {
            let chunk: ChatChunk = serde_json::from_value(json!({"id": "c", "object": "chat.completion.chunk",
                "created": 1, "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}))
            .unwrap();
            frames.extend(events.push(&chunk));
        }
        frames.extend(events.finish());
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                serde_json::from_str(data).unwrap()
            })
            .collect()
    }

    fn piece(text: &str) -> Value {
        json!({"reasoning_content": text, "thinking_blocks": [{"type": "thinking", "thinking": text}]})
    }

    fn signature(s: &str) -> Value {
        json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": s}]})
    }

    #[test]
    fn each_signed_block_is_an_item_streamed_piece_by_piece() {
        let events = events_of(&[
            piece("Paris"),
            piece(", so a tool."),
            signature("s1"),
            piece("Then"),
            signature("s2"),
            json!({"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}),
            json!({"content": "Done."}),
        ]);
        let names: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        let reasoning_item = [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
        ];
        assert_eq!(names[..2], ["response.created", "response.in_progress"]);
        assert_eq!(names[2..5], reasoning_item);
        assert_eq!(
            names[5..9],
            [
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done"
            ],
            "one delta per upstream piece, never merged"
        );
        assert_eq!(names[9..12], reasoning_item);
        // The redacted block: an item with no summary.
        assert_eq!(names[15..17], ["response.output_item.added", "response.output_item.done"]);
        assert_eq!(names[17], "response.output_item.added");
        assert_eq!(events[17]["item"]["type"], "message");
        let done = &events[8];
        assert_eq!(
            (done["output_index"].clone(), done["item"]["summary"][0]["text"].clone()),
            (json!(0), json!("Paris, so a tool."))
        );
        let sealed = done["item"]["encrypted_content"].as_str().unwrap();
        assert_eq!(reasoning::open("claude", sealed), vec![ThinkingBlock::signed("Paris, so a tool.", "s1")]);
        let delta = &events[4];
        assert_eq!(delta["item_id"], events[2]["item"]["id"]);
        assert_eq!((delta["summary_index"].clone(), delta["delta"].clone()), (json!(0), json!("Paris")));
        assert_eq!(events[16]["item"]["summary"], json!([]));
        assert_eq!(events[16]["output_index"], 2);
        let completed = events.last().unwrap();
        let kinds: Vec<&Value> =
            completed["response"]["output"].as_array().unwrap().iter().map(|i| &i["type"]).collect();
        assert_eq!(kinds, [&json!("reasoning"), &json!("reasoning"), &json!("reasoning"), &json!("message")]);
        let sequence: Vec<u64> = events.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(sequence, (0..events.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_signature_without_text_is_an_item_without_summary() {
        // Gemini signs its function call; Claude may leave the text out.
        let events = events_of(&[signature("g1"), json!({"content": "Hi."})]);
        let names: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(names[2..4], ["response.output_item.added", "response.output_item.done"]);
        assert_eq!(events[3]["item"]["summary"], json!([]));
        assert!(events[3]["item"]["encrypted_content"].is_string());
    }
}
