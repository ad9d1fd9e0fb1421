//! What a chat request asks of the model's thinking: OpenAI's `reasoning_effort` (`none`,
//! `minimal`, `low`, `medium`, `high`; `xhigh`, which Codex may send, is `high` here) or
//! litellm's `thinking` (Anthropic's own config), and the
//! thinking budget each effort stands for (litellm's defaults). Each translation maps the ask
//! to its provider's control (`gemini.rs` its `thinkingConfig`); Claude's, which Anthropic and
//! Bedrock share, is here with the limits Claude puts on a request that thinks.

use crate::api::anthropic::Thinking;
use crate::exchange::ApiError;
use ferrolite_codegen::str_map;
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// How hard the model should think.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// No thinking.
    None,
    Minimal,
    Low,
    Medium,
    High,
}

str_map! {
    /// `reasoning_effort` -> [`Effort`].
    pub fn effort_of -> Effort {
        "none" => Effort::None,
        "minimal" => Effort::Minimal,
        "low" => Effort::Low,
        "medium" => Effort::Medium,
        "high" | "xhigh" => Effort::High,
    }
}

/// What the request asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    Effort(Effort),
    /// litellm's `thinking` param, as the client wrote it.
    Thinking(Thinking<'static>),
}

/// The ask of a chat request's parameters: `thinking` when it is set, else `reasoning_effort`.
pub fn ask(p: &Map<String, Value>) -> Result<Option<Ask>, ApiError> {
    match p.get("thinking") {
        None | Some(Value::Null) => {}
        Some(thinking) => {
            let thinking = Thinking::deserialize(thinking).map_err(|e| {
                ApiError::bad_request(format!("thinking must be {{\"type\": \"enabled\", \"budget_tokens\": N}}, {{\"type\": \"adaptive\"}} or {{\"type\": \"disabled\"}}: {e}"))
                    .with_param("thinking")
            })?;
            return Ok(Some(Ask::Thinking(thinking)));
        }
    }
    match p.get("reasoning_effort") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => effort_of(s).map(|e| Some(Ask::Effort(e))).ok_or_else(|| {
            ApiError::bad_request(format!("reasoning_effort {s:?} is not one of: {}", EFFORT_OF_KEYS.join(", ")))
                .with_param("reasoning_effort")
        }),
        Some(_) => Err(ApiError::bad_request("reasoning_effort must be a string").with_param("reasoning_effort")),
    }
}

/// The `reasoning_effort` closest to Anthropic's `thinking` (what `/v1/messages` sends a
/// deployment that is not Anthropic's): off is `none`; a budget the effort whose litellm budget
/// covers it (up to 1024 `low`, 2048 `medium`, beyond `high`); adaptive thinking `medium`.
pub fn effort_for(thinking: &Thinking<'_>) -> &'static str {
    if !thinking.is_on() {
        return "none";
    }
    match thinking.budget_tokens {
        Some(0..=1024) => "low",
        Some(1025..=2048) | None => "medium",
        Some(_) => "high",
    }
}

/// litellm's thinking budget for an effort (`DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET`);
/// `None` for no thinking.
pub fn budget(effort: Effort) -> Option<u64> {
    match effort {
        Effort::None => None,
        Effort::Minimal => Some(128),
        Effort::Low => Some(1024),
        Effort::Medium => Some(2048),
        Effort::High => Some(4096),
    }
}

// ---------------------------------------------------------------------------------------------
// Claude (Anthropic's API, and Bedrock's Claude models)

/// The smallest budget Claude takes.
pub const CLAUDE_MIN_BUDGET: u64 = 1024;

/// Room for the answer when a thinking request sets no `max_tokens` (the budget comes on top).
pub const CLAUDE_ANSWER_ROOM: u64 = 4096;

/// Claude's `thinking` (and `output_config.effort`) for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaudeThinking {
    pub thinking: Thinking<'static>,
    /// `output_config.effort`, for adaptive thinking.
    pub effort: Option<&'static str>,
}

impl ClaudeThinking {
    pub fn is_on(&self) -> bool {
        self.thinking.is_on()
    }

    /// Whether a tool call's turn must start with its thinking when the conversation continues
    /// it (Claude refuses budgeted thinking otherwise; adaptive thinking may have thought nothing).
    pub fn needs_signed_tool_turn(&self) -> bool {
        self.thinking.kind == "enabled"
    }

    /// `max_tokens` for a request that asked for `requested`: Claude counts thinking in it and
    /// wants it above the budget, so one at or under the budget gets the budget on top (and
    /// none asked for, the budget and [`CLAUDE_ANSWER_ROOM`]).
    pub fn max_tokens(&self, requested: Option<u64>) -> Option<u64> {
        let budget = self.thinking.budget_tokens.filter(|_| self.thinking.kind == "enabled");
        match (requested, budget) {
            (None, Some(budget)) => Some(budget.saturating_add(CLAUDE_ANSWER_ROOM)),
            (Some(n), Some(budget)) if n <= budget => Some(budget.saturating_add(n)),
            (requested, _) => requested,
        }
    }
}

/// Claude's thinking for what a request asks of `model`: adaptive thinking (with its effort)
/// on Claude 4.6 and later, which refuse (or deprecate) fixed budgets; a budget of at least
/// [`CLAUDE_MIN_BUDGET`] before. `none` sends nothing: Claude then thinks as it does by default.
pub fn claude(model: &str, ask: &Ask) -> Option<ClaudeThinking> {
    let effort = match ask {
        Ask::Thinking(thinking) => return Some(ClaudeThinking { thinking: thinking.clone(), effort: None }),
        Ask::Effort(Effort::None) => return None,
        Ask::Effort(effort) => *effort,
    };
    if claude_adaptive(model) {
        let level = match effort {
            Effort::None | Effort::Minimal | Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
        };
        // The newest models leave the thinking text out unless asked for its summary.
        let thinking = Thinking {
            kind: Cow::Borrowed("adaptive"),
            budget_tokens: None,
            display: Some(Cow::Borrowed("summarized")),
        };
        return Some(ClaudeThinking { thinking, effort: Some(level) });
    }
    let budget = budget(effort).map(|b| b.max(CLAUDE_MIN_BUDGET));
    Some(ClaudeThinking {
        thinking: Thinking { kind: Cow::Borrowed("enabled"), budget_tokens: budget, display: None },
        effort: None,
    })
}

/// Whether a Claude model id (Anthropic's `claude-opus-4-7`, `claude-3-7-sonnet-20250219`, or
/// Bedrock's `us.anthropic.claude-sonnet-4-6-v1:0`) is version 4.6 or later.
pub fn claude_adaptive(model: &str) -> bool {
    let Some((_, rest)) = model.split_once("claude-") else { return false };
    let mut numbers =
        rest.split(['-', '.', ':']).skip_while(|t| !t.bytes().all(|b| b.is_ascii_digit()) || t.is_empty());
    let major: u32 = match numbers.next().and_then(|t| t.parse().ok()) {
        Some(major) => major,
        None => return false,
    };
    // A minor version is one or two digits; a date (`20250514`) is not one.
    let minor: u32 = numbers.next().filter(|t| t.len() <= 2).and_then(|t| t.parse().ok()).unwrap_or(0);
    (major, minor) >= (4, 6)
}

/// Whether Claude, thinking, takes this `temperature` (1 only).
pub fn claude_takes_temperature(n: &Number) -> bool {
    n.as_f64() == Some(1.0)
}

/// Whether Claude, thinking, takes this `top_p` (0.95 to 1).
pub fn claude_takes_top_p(n: &Number) -> bool {
    n.as_f64().is_some_and(|p| p >= 0.95)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ask_of(params: Value) -> Result<Option<Ask>, ApiError> {
        ask(params.as_object().unwrap_or(&Map::new()))
    }

    #[test]
    fn efforts_and_thinking_read_and_thinking_wins() {
        assert_eq!(ask_of(json!({})).unwrap(), None);
        assert_eq!(ask_of(json!({"reasoning_effort": "low"})).unwrap(), Some(Ask::Effort(Effort::Low)));
        assert_eq!(ask_of(json!({"reasoning_effort": "xhigh"})).unwrap(), Some(Ask::Effort(Effort::High)));
        let both = ask_of(json!({"reasoning_effort": "low", "thinking": {"type": "enabled", "budget_tokens": 5000}}));
        let Some(Ask::Thinking(t)) = both.unwrap() else { panic!("thinking wins") };
        assert_eq!((t.kind.as_ref(), t.budget_tokens), ("enabled", Some(5000)));
        let e = ask_of(json!({"reasoning_effort": "extreme"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
        assert!(e.message.contains("minimal"), "{}", e.message);
        assert_eq!(ask_of(json!({"thinking": "on"})).unwrap_err().param.as_deref(), Some("thinking"));
    }

    #[test]
    fn claude_versions_from_model_ids() {
        for (model, adaptive) in [
            ("claude-3-7-sonnet-20250219", false),
            ("claude-sonnet-4-20250514", false),
            ("claude-sonnet-4-5-20250929", false),
            ("claude-opus-4-1", false),
            ("claude-sonnet-4-6", true),
            ("claude-opus-4-7", true),
            ("claude-opus-5", true),
            ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", false),
            ("anthropic.claude-opus-4-6-v1", true),
            ("anthropic.claude-3-5-haiku-20241022-v1:0", false),
            ("gpt-4o", false),
        ] {
            assert_eq!(claude_adaptive(model), adaptive, "{model}");
        }
    }

    #[test]
    fn efforts_become_budgets_or_adaptive_effort() {
        let budget_of =
            |model: &str, effort| claude(model, &Ask::Effort(effort)).and_then(|c| c.thinking.budget_tokens);
        let old = "claude-sonnet-4-5";
        assert_eq!(budget_of(old, Effort::Minimal), Some(1024), "Anthropic's minimum, not litellm's 128");
        assert_eq!(budget_of(old, Effort::Low), Some(1024));
        assert_eq!(budget_of(old, Effort::Medium), Some(2048));
        assert_eq!(budget_of(old, Effort::High), Some(4096));
        assert_eq!(claude(old, &Ask::Effort(Effort::None)), None);
        let new = claude("claude-opus-4-7", &Ask::Effort(Effort::Medium)).unwrap();
        assert_eq!((new.thinking.kind.as_ref(), new.effort), ("adaptive", Some("medium")));
        assert_eq!(new.thinking.display.as_deref(), Some("summarized"));
    }

    #[test]
    fn max_tokens_leaves_room_above_the_budget() {
        let c = claude("claude-sonnet-4-5", &Ask::Effort(Effort::Medium)).unwrap();
        assert_eq!(c.max_tokens(None), Some(2048 + CLAUDE_ANSWER_ROOM));
        assert_eq!(c.max_tokens(Some(500)), Some(2548), "the budget on top of what was asked");
        assert_eq!(c.max_tokens(Some(2048)), Some(4096));
        assert_eq!(c.max_tokens(Some(9000)), Some(9000), "already room enough");
        let adaptive = claude("claude-opus-4-7", &Ask::Effort(Effort::High)).unwrap();
        assert_eq!(adaptive.max_tokens(Some(100)), Some(100));
    }
}
