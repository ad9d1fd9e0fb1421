//! The codegen macros behave as their docs say.

use ferrolite_codegen::{str_map, wire_enum};

wire_enum! {
    /// A test vocabulary.
    pub enum Color { Red = "red", DarkBlue = "dark-blue" }
}

str_map! {
    /// Anthropic stop_reason -> OpenAI finish_reason, the shape provider tables take.
    fn finish_reason -> &'static str {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        _ => "stop",
    }
}

str_map! {
    fn strict_role -> &'static str {
        "assistant" => "model",
        "user" => "user",
    }
}

#[test]
fn wire_enum_round_trips_names() {
    assert_eq!(Color::ALL, [Color::Red, Color::DarkBlue]);
    assert_eq!(Color::DarkBlue.as_str(), "dark-blue");
    assert_eq!(Color::from_wire("red"), Some(Color::Red));
    assert_eq!(Color::from_wire("Red"), None);
    assert_eq!(Color::EXPECTING, "one of: red, dark-blue");
    assert_eq!(serde_json::to_string(&Color::DarkBlue).unwrap(), "\"dark-blue\"");
    let err = serde_json::from_str::<Color>("\"green\"").unwrap_err().to_string();
    assert!(err.contains("unknown Color \"green\", expected one of: red, dark-blue"), "{err}");
}

#[test]
fn str_map_with_and_without_default() {
    assert_eq!(finish_reason("stop_sequence"), "stop");
    assert_eq!(finish_reason("tool_use"), "tool_calls");
    assert_eq!(finish_reason("something-new"), "stop");
    assert_eq!(FINISH_REASON_KEYS, ["end_turn", "stop_sequence", "max_tokens", "tool_use"]);
    assert_eq!(strict_role("assistant"), Some("model"));
    assert_eq!(strict_role("system"), None);
}
