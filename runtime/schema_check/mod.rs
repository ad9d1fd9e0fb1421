//! JSON Schema checks with messages people can act on.
//!
//! Both manifests and request bodies are checked with `jsonschema`; this turns its errors into
//! a JSON pointer to the offending value plus a short reason, e.g.
//! `/config/model_list/1/litellm_params/model: required property missing`.

pub mod text;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

/// One schema violation: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer to the value (for a missing property, to where it should be).
    pub pointer: String,
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() { "/" } else { &self.pointer };
        write!(f, "{at}: {}", self.reason)
    }
}

/// Every violation of `validator` by `instance`, in document order.
pub fn violations(validator: &Validator, instance: &Value) -> Vec<Violation> {
    // Most instances are valid: the yes/no walk stops at nothing and builds no errors, where
    // collecting them costs every request a boxed iterator and its bookkeeping.
    if validator.is_valid(instance) {
        return Vec::new();
    }
    let mut found: Vec<Violation> = Vec::new();
    for e in validator.iter_errors(instance) {
        describe(&e, &mut found);
    }
    found.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    found.dedup();
    found
}

/// Builds a validator for a schema ferrolite ships (never user input).
pub fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::draft202012::new(schema).map_err(|e| e.to_string())
}

fn describe(error: &ValidationError<'_>, out: &mut Vec<Violation>) {
    let pointer = error.instance_path().as_str().to_owned();
    let violation = match error.kind() {
        ValidationErrorKind::Required { property } => Violation {
            pointer: format!("{pointer}/{}", property.as_str().unwrap_or_default()),
            reason: "required property missing".to_owned(),
        },
        ValidationErrorKind::Type { kind } => {
            Violation { pointer, reason: format!("expected {}, got {}", type_names(kind), json_type(error.instance())) }
        }
        ValidationErrorKind::Enum { options } => Violation {
            pointer,
            reason: format!("unknown value {}; valid values: {}", short(error.instance()), list(options)),
        },
        ValidationErrorKind::Constant { expected_value } => {
            Violation { pointer, reason: format!("must be {expected_value}") }
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            Violation { pointer, reason: format!("unknown properties: {}", unexpected.join(", ")) }
        }
        // `Option<T>` fields become `anyOf: [T, null]`: report why the value is not a T (every
        // reason: an object may break several of its rules at once).
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let mut branches = context.iter().filter(|branch| !branch.iter().all(expects_null_only));
            match (branches.next(), branches.next()) {
                (Some(only), None) if !only.is_empty() => {
                    for e in only {
                        describe(e, out);
                    }
                    return;
                }
                _ => Violation {
                    pointer,
                    reason: format!("{} matches none of the allowed forms", short(error.instance())),
                },
            }
        }
        // A grammar ferrolite names says what to write instead of quoting its pattern.
        ValidationErrorKind::Pattern { pattern } => match crate::grammar::says(pattern) {
            Some(says) => Violation {
                pointer,
                reason: format!("{} {says}", error.instance().as_str().map(crate::grammar::quoted).unwrap_or_default()),
            },
            None => Violation { pointer, reason: error.to_string() },
        },
        ValidationErrorKind::MinItems { limit } => {
            Violation { pointer, reason: format!("needs at least {limit} item{}", if *limit == 1 { "" } else { "s" }) }
        }
        _ => Violation { pointer, reason: error.to_string() },
    };
    out.push(violation);
}

fn expects_null_only(error: &ValidationError<'_>) -> bool {
    matches!(error.kind(), ValidationErrorKind::Type { kind: TypeKind::Single(t) } if t.to_string() == "null")
}

fn type_names(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => t.to_string(),
        TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            names.join(" or ")
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value for an error message, cut so a huge input never floods the message.
fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn list(options: &Value) -> String {
    match options {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}
