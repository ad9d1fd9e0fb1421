//! An agent's turn late in a session, as the long-conversation lane sends it: the chat history
//! of tool calls and their results, and the tools, in one body of 110 KB. The shape
//! `benches/callgrind.sh` counts (181 messages, 20 tools; its words are drawn by Python, so its
//! body is 112 KB); the words here come from a fixed generator, so every run sends the same bytes.

use serde_json::{json, Value};

const WORDS: [&str; 16] = [
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "agents", "call", "tools", "and",
    "read", "files",
];

/// A chat request body with `MODEL` where the model goes (the harness's templates' convention).
pub fn body() -> String {
    // A linear congruential generator: no dependency, and the same text on every machine.
    let mut state: u64 = 7;
    let mut text = |n: usize| {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            out.push(WORDS[(state >> 60) as usize]);
        }
        out.join(" ")
    };
    let source = "fn main() {\n    println!(\"hello\");\n}\n".repeat(10);
    let mut messages = vec![json!({"role": "system", "content": text(300)})];
    for i in 0..60 {
        let arguments = json!({"path": format!("src/file{i}.rs")}).to_string();
        messages.push(json!({"role": "user", "content": text(200)}));
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": format!("call_{i}"), "type": "function", "function": {"name": "read_file", "arguments": arguments}}
        ]}));
        messages.push(json!({"role": "tool", "tool_call_id": format!("call_{i}"), "content": source}));
    }
    let tools: Vec<Value> = (0..20)
        .map(|i| {
            json!({"type": "function", "function": {
                "name": format!("tool{i}"),
                "description": "does a thing ".repeat(20),
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
            }})
        })
        .collect();
    json!({"model": "MODEL", "messages": messages, "tools": tools, "max_tokens": 16}).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_body_is_an_agents_long_turn_and_fits_one_argument() {
        let body = super::body();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["messages"].as_array().map(Vec::len), Some(181));
        assert_eq!(value["tools"].as_array().map(Vec::len), Some(20));
        // oha takes the body as one argument, which Linux caps at 128 KiB.
        assert!((100_000..128 * 1024).contains(&body.len()), "{}", body.len());
        assert_eq!(body, super::body(), "the same bytes every run");
    }
}
