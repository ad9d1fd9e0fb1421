//! A request body checked against its route's schema in one walk over its text, building no
//! value: how a body an upstream takes as sent (an OpenAI pass-through) is admitted without
//! reading it into a `serde_json::Value` it would never use. For an agent's long conversation
//! that reading was most of the gateway's work.
//!
//! The walk knows the subset of JSON Schema the catalogue's request schemas use (`type`,
//! `properties`, `required`, `items`, `anyOf` whose branches differ by type, `minimum`,
//! `maximum`, `minItems`, `maxLength`); [`Plan::compile`] refuses a schema with anything else.
//! It answers only when it is sure: a body it calls valid is one `jsonschema` accepts and that
//! serde_json reads into a `Value` the same way (no [`Scanner::doubting`] doubts). Anything else
//! (an invalid body, a doubt, a case it does not decide) goes the way every body went before:
//! read into a value and checked by `jsonschema`, whose errors the client gets.

use crate::json_scan::{ScanError, Scanner};
use serde_json::Value;
use std::ops::Range;

/// A route's request schema, ready for the walk.
#[derive(Debug)]
pub struct Plan {
    root: Shape,
}

#[derive(Debug)]
enum Node {
    /// Anything (no constraint).
    Any,
    /// One of several shapes, told apart by the JSON type of the value.
    AnyOf(Vec<Node>),
    Shape(Box<Shape>),
}

#[derive(Debug, Default)]
struct Shape {
    /// The JSON types allowed; `None`: any.
    types: Option<Types>,
    /// Named members and their schemas (the required ones among them).
    properties: Vec<(String, Node)>,
    /// A bit per entry of `properties` that must be present.
    required: u64,
    items: Option<Node>,
    min_items: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    max_length: Option<u64>,
}

/// A set of JSON Schema type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Types(u8);

impl Types {
    const NULL: u8 = 1;
    const BOOLEAN: u8 = 2;
    const OBJECT: u8 = 4;
    const ARRAY: u8 = 8;
    const NUMBER: u8 = 16;
    const INTEGER: u8 = 32;
    const STRING: u8 = 64;

    fn named(name: &str) -> Option<u8> {
        Some(match name {
            "null" => Self::NULL,
            "boolean" => Self::BOOLEAN,
            "object" => Self::OBJECT,
            "array" => Self::ARRAY,
            "number" => Self::NUMBER,
            "integer" => Self::INTEGER,
            "string" => Self::STRING,
            _ => return None,
        })
    }

    /// Whether a value of `kind` may be one of these types (a number may be an integer).
    fn admit(self, kind: Kind) -> bool {
        let bits = match kind {
            Kind::Null => Self::NULL,
            Kind::Boolean => Self::BOOLEAN,
            Kind::Object => Self::OBJECT,
            Kind::Array => Self::ARRAY,
            Kind::Number => Self::NUMBER | Self::INTEGER,
            Kind::String => Self::STRING,
        };
        self.0 & bits != 0
    }
}

/// A value's JSON type, told by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Object,
    Array,
    Number,
    String,
}

/// Why the walk stopped short of "valid".
#[derive(Debug)]
enum Stop {
    /// The body breaks the schema.
    Invalid,
    /// A case the walk leaves to `jsonschema`.
    Unsure,
    /// Not JSON.
    Syntax,
}

impl From<ScanError> for Stop {
    fn from(_: ScanError) -> Stop {
        Stop::Syntax
    }
}

/// The walk's answer for a body it is sure of: where its top-level object opens, and each
/// member's key (the text between its quotes) and value, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub open: usize,
    pub members: Vec<(Range<usize>, Range<usize>)>,
}

impl Plan {
    /// The plan of `schema`, or `None` when it uses a keyword the walk does not know, its root
    /// does not take an object, or an object names more than 64 properties.
    pub fn compile(schema: &Value) -> Option<Plan> {
        let root = match node(schema)? {
            Node::Any => Shape::default(),
            Node::Shape(shape) if shape.types.is_none_or(|t| t.0 & Types::OBJECT != 0) => *shape,
            _ => return None,
        };
        Some(Plan { root })
    }

    /// `doc`'s top-level members when it is one JSON object that matches the plan and that
    /// serde_json reads into a `Value` meaning what its bytes say; `None` otherwise (the body
    /// then takes the reading and checking that say what is wrong with it).
    pub fn check(&self, text: &str) -> Option<Members> {
        let mut walk = Walk { scan: Scanner::doubting(text.as_bytes()) };
        walk.scan.skip_space();
        if walk.scan.peek() != Some(b'{') {
            return None;
        }
        let open = walk.scan.pos;
        let mut members = Vec::with_capacity(16);
        walk.object(&self.root, Some(&mut members)).ok()?;
        walk.scan.skip_space();
        (walk.scan.peek().is_none() && !walk.scan.doubtful()).then_some(Members { open, members })
    }
}

/// The plan of one schema; `None` for a keyword outside the walk's subset.
fn node(schema: &Value) -> Option<Node> {
    let Value::Object(map) = schema else {
        return (schema == &Value::Bool(true)).then_some(Node::Any);
    };
    // Words that say nothing the walk checks.
    const NOTES: [&str; 4] = ["description", "title", "examples", "default"];
    if let Some(branches) = map.get("anyOf") {
        // Only a bare anyOf: its branches then say everything.
        if map.keys().any(|k| k != "anyOf" && !NOTES.contains(&k.as_str())) {
            return None;
        }
        let branches: Option<Vec<Node>> = branches.as_array()?.iter().map(node).collect();
        return Some(Node::AnyOf(branches?));
    }
    let mut shape = Shape::default();
    for (key, value) in map {
        match key.as_str() {
            "type" => {
                let names: Vec<&str> = match value {
                    Value::String(name) => vec![name.as_str()],
                    Value::Array(names) => names.iter().map(Value::as_str).collect::<Option<_>>()?,
                    _ => return None,
                };
                let bits = names.into_iter().map(Types::named).try_fold(0, |all, t| t.map(|t| all | t))?;
                shape.types = Some(Types(bits));
            }
            "properties" => {
                for (name, schema) in value.as_object()? {
                    shape.properties.push((name.clone(), node(schema)?));
                }
            }
            "items" => shape.items = Some(node(value)?),
            "minItems" => shape.min_items = Some(value.as_u64()?),
            "maxLength" => shape.max_length = Some(value.as_u64()?),
            "minimum" => shape.minimum = Some(value.as_f64()?),
            "maximum" => shape.maximum = Some(value.as_f64()?),
            "required" | "anyOf" => {}
            note if NOTES.contains(&note) => {}
            _ => return None,
        }
    }
    for name in map.get("required").map(|r| r.as_array()).unwrap_or(Some(&Vec::new()))? {
        let name = name.as_str()?;
        let at = match shape.properties.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                shape.properties.push((name.to_owned(), Node::Any));
                shape.properties.len() - 1
            }
        };
        shape.required |= 1u64.checked_shl(u32::try_from(at).ok()?)?;
    }
    if shape.properties.len() > 64 {
        return None;
    }
    let unconstrained = shape.types.is_none()
        && shape.properties.is_empty()
        && shape.items.is_none()
        && shape.min_items.is_none()
        && shape.minimum.is_none()
        && shape.maximum.is_none()
        && shape.max_length.is_none();
    Some(if unconstrained { Node::Any } else { Node::Shape(Box::new(shape)) })
}

impl Node {
    /// Whether a value of `kind` could match this node (which anyOf branch it is for).
    fn admits(&self, kind: Kind) -> bool {
        match self {
            Node::Any => true,
            Node::AnyOf(branches) => branches.iter().any(|b| b.admits(kind)),
            Node::Shape(shape) => shape.types.is_none_or(|t| t.admit(kind)),
        }
    }
}

struct Walk<'a> {
    scan: Scanner<'a>,
}

impl Walk<'_> {
    fn kind(&self) -> Result<Kind, Stop> {
        Ok(match self.scan.peek() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Boolean,
            Some(b'n') => Kind::Null,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            _ => return Err(Stop::Syntax),
        })
    }

    /// The value at the scanner (space skipped), checked against `node`.
    fn value(&mut self, node: &Node) -> Result<(), Stop> {
        match node {
            Node::Any => Ok(self.scan.value()?),
            Node::AnyOf(branches) => {
                let kind = self.kind()?;
                let mut fitting = branches.iter().filter(|b| b.admits(kind));
                match (fitting.next(), fitting.next()) {
                    (Some(branch), None) => self.value(branch),
                    (None, _) => Err(Stop::Invalid),
                    // Branches that overlap would each need trying: jsonschema's to decide.
                    (Some(_), Some(_)) => Err(Stop::Unsure),
                }
            }
            Node::Shape(shape) => self.shaped(shape),
        }
    }

    fn shaped(&mut self, shape: &Shape) -> Result<(), Stop> {
        let kind = self.kind()?;
        if let Some(types) = shape.types {
            if !types.admit(kind) {
                return Err(Stop::Invalid);
            }
        }
        match kind {
            Kind::Object if !shape.properties.is_empty() => self.object(shape, None),
            Kind::Array if shape.items.is_some() || shape.min_items.is_some() => self.array(shape),
            Kind::String if shape.max_length.is_some() => {
                let span = self.scan.string()?;
                let text = self.scan.text(span);
                // Escapes would need decoding to count characters.
                if text.contains(&b'\\') {
                    return Err(Stop::Unsure);
                }
                // The whole text is UTF-8 and a string's span ends at its quotes.
                let chars = std::str::from_utf8(text).map_err(|_| Stop::Unsure)?.chars().count() as u64;
                match shape.max_length.is_some_and(|most| chars > most) {
                    true => Err(Stop::Invalid),
                    false => Ok(()),
                }
            }
            Kind::Number => self.number(shape),
            _ => Ok(self.scan.value()?),
        }
    }

    fn number(&mut self, shape: &Shape) -> Result<(), Stop> {
        let span = self.scan.number()?;
        let text = self.scan.text(span);
        let whole = !text.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
        let integer_only = shape.types.is_some_and(|t| t.0 & Types::NUMBER == 0);
        if integer_only && !whole {
            // `1.0` is an integer to JSON Schema; leave such spellings to jsonschema.
            return Err(Stop::Unsure);
        }
        if shape.minimum.is_none() && shape.maximum.is_none() {
            return Ok(());
        }
        // f64 holds 15 significant digits exactly: longer numbers near a bound are not decided here.
        if text.len() > 15 {
            return Err(Stop::Unsure);
        }
        let n: f64 = std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or(Stop::Unsure)?;
        let below = shape.minimum.is_some_and(|least| n < least);
        let above = shape.maximum.is_some_and(|most| n > most);
        match below || above {
            true => Err(Stop::Invalid),
            false => Ok(()),
        }
    }

    /// An object at the scanner; its members' spans pushed to `members` when asked.
    fn object(
        &mut self,
        shape: &Shape,
        mut members: Option<&mut Vec<(Range<usize>, Range<usize>)>>,
    ) -> Result<(), Stop> {
        let mut seen = 0u64;
        if !self.opened(true) {
            loop {
                let key = self.scan.key()?;
                let start = self.scan.pos;
                let name = self.scan.text(key.clone());
                match shape.properties.iter().position(|(n, _)| n.as_bytes() == name) {
                    Some(at) => {
                        seen |= 1 << at;
                        self.value(&shape.properties[at].1)?;
                    }
                    None => self.scan.value()?,
                }
                if let Some(members) = members.as_deref_mut() {
                    members.push((key, start..self.scan.pos));
                }
                if self.closed(b'}')? {
                    break;
                }
            }
        }
        self.scan.leave(true);
        match shape.required & !seen {
            0 => Ok(()),
            _ => Err(Stop::Invalid),
        }
    }

    /// Enters the object or array at the scanner: `true` when it is empty (and already closed).
    fn opened(&mut self, object: bool) -> bool {
        self.scan.pos += 1;
        self.scan.enter(object);
        self.scan.skip_space();
        let empty = self.scan.peek() == Some(if object { b'}' } else { b']' });
        if empty {
            self.scan.pos += 1;
        }
        empty
    }

    /// After a container's member or element: `true` at its `close`, `false` past a comma
    /// (space skipped either way).
    fn closed(&mut self, close: u8) -> Result<bool, Stop> {
        self.scan.skip_space();
        match self.scan.peek() {
            Some(b',') => {
                self.scan.pos += 1;
                self.scan.skip_space();
                Ok(false)
            }
            Some(byte) if byte == close => {
                self.scan.pos += 1;
                Ok(true)
            }
            _ => Err(Stop::Syntax),
        }
    }

    fn array(&mut self, shape: &Shape) -> Result<(), Stop> {
        let mut count = 0u64;
        if !self.opened(false) {
            loop {
                match &shape.items {
                    Some(items) => self.value(items)?,
                    None => self.scan.value()?,
                }
                count += 1;
                if self.closed(b']')? {
                    break;
                }
            }
        }
        self.scan.leave(false);
        match shape.min_items.is_some_and(|least| count < least) {
            true => Err(Stop::Invalid),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Operation, ROUTES};

    fn schema(op: Operation) -> Value {
        serde_json::from_str(op.route().request_schema.unwrap()).unwrap()
    }

    /// The walk's answer held to jsonschema's and serde_json's: a body it admits is valid, reads
    /// as a `Value`, and has the members it found; a body jsonschema refuses it never admits.
    fn agrees(op: Operation, text: &str) -> bool {
        let schema = schema(op);
        let plan = Plan::compile(&schema).unwrap();
        let validator = crate::schema_check::compile(&schema).unwrap();
        let found = plan.check(text);
        let value = serde_json::from_str::<Value>(text);
        if let Some(found) = &found {
            let value = value.as_ref().unwrap_or_else(|e| panic!("{text}: admitted, serde_json says {e}"));
            assert!(validator.is_valid(value), "{text}: admitted, jsonschema refuses");
            let keys: Vec<&str> = found.members.iter().map(|(k, _)| &text[k.clone()]).collect();
            let expected: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, expected, "{text}");
            for (key, span) in &found.members {
                let member: Value = serde_json::from_str(&text[span.clone()]).unwrap();
                assert_eq!(Some(&member), value.get(&text[key.clone()]), "{text}");
            }
        }
        found.is_some()
    }

    #[test]
    fn every_catalogue_request_schema_is_walked_or_refused_whole() {
        let mut walked = 0;
        for route in &ROUTES {
            let Some(text) = route.request_schema else { continue };
            let schema: Value = serde_json::from_str(text).unwrap();
            walked += usize::from(Plan::compile(&schema).is_some());
        }
        assert!(walked > 10, "{walked} schemas walked");
        for op in [Operation::ChatCompletions, Operation::Completions, Operation::Embeddings] {
            assert!(Plan::compile(&schema(op)).is_some(), "{op:?}");
        }
        // A keyword outside the subset makes the whole schema the reader's.
        for outside in [
            serde_json::json!({"type": "object", "properties": {"a": {"pattern": "x"}}}),
            serde_json::json!({"type": "object", "additionalProperties": false}),
            serde_json::json!({"type": "string"}),
            serde_json::json!({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}], "minimum": 1}}}),
        ] {
            assert!(Plan::compile(&outside).is_none(), "{outside}");
        }
    }

    #[test]
    fn valid_bodies_are_admitted_with_their_members() {
        let chat = Operation::ChatCompletions;
        for text in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#" { "messages" : [ {"role":"user","content":[{"type":"text","text":"a\nb\u00e9"}]}, {"role":"assistant","content":null,"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]}, {"role":"tool","tool_call_id":"c","content":"ok"} ], "model":"m", "temperature":0.7, "max_tokens":16, "stream":true, "stream_options":{"include_usage":true}, "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"p":{"type":"string"}}}}}], "tool_choice":"auto", "stop":["x"], "n":1, "seed":-3, "presence_penalty":-2, "extra":{"a":[1,2,{"b":null}]} } "#,
            r#"{"model":"m","messages":[{"role":"user","content":"😀 \ud83d\ude00"}],"top_p":1}"#,
        ] {
            assert!(agrees(chat, text), "{text}");
        }
        assert!(agrees(Operation::Embeddings, r#"{"model":"e","input":["a","b"],"dimensions":8}"#));
    }

    #[test]
    fn bodies_it_is_not_sure_of_go_to_the_reader() {
        let chat = Operation::ChatCompletions;
        let ok = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
        for text in [
            // Invalid by the schema.
            r#"{"model":"m"}"#.to_owned(),
            r#"{"model":"m","messages":[]}"#.to_owned(),
            r#"{"model":1,"messages":[{"role":"user"}]}"#.to_owned(),
            r#"{"model":"m","messages":[{"content":"no role"}]}"#.to_owned(),
            r#"{"model":"m","messages":[{"role":"user","content":5}]}"#.to_owned(),
            r#"{"model":"m","messages":[{"role":"user","content":[{"text":"no type"}]}]}"#.to_owned(),
            format!(r#"{{{ok},"temperature":2.5}}"#),
            format!(r#"{{{ok},"temperature":-0.1}}"#),
            format!(r#"{{{ok},"n":0}}"#),
            format!(r#"{{{ok},"max_tokens":"16"}}"#),
            format!(r#"{{{ok},"max_tokens":1.5}}"#),
            format!(r#"{{{ok},"stream":"yes"}}"#),
            format!(r#"{{{ok},"tools":[{{"function":{{}}}}]}}"#),
            // Not JSON, or not an object.
            format!(r#"{{{ok},}}"#),
            format!(r#"{{{ok}}} x"#),
            format!(r#"[{{{ok}}}]"#),
            // Doubts: what serde_json could read otherwise or refuse.
            format!(r#"{{{ok},"model":"again"}}"#),
            format!(r#"{{{ok},"x":{{"a":1,"a":2}}}}"#),
            format!(r#"{{{ok},"mod\u0065l":"m"}}"#),
            format!(r#"{{{ok},"x":"\ud800"}}"#),
            format!(r#"{{{ok},"x":1e400}}"#),
            format!(r#"{{{ok},"x":{}}}"#, "1".repeat(400)),
            format!(r#"{{{ok},"x":{}1{}}}"#, "[".repeat(130), "]".repeat(130)),
            format!(r#"{{{ok},"x":{{"$serde_json::private::RawValue":1}}}}"#),
            // Cases left to jsonschema: an integer spelled with a point, long numbers at a bound.
            format!(r#"{{{ok},"max_tokens":16.0}}"#),
            format!(r#"{{{ok},"temperature":1.0000000000000000001}}"#),
        ] {
            assert!(!agrees(chat, &text), "{text}");
        }
        // Nesting below the doubt is fine.
        assert!(agrees(chat, &format!(r#"{{{ok},"x":{}1{}}}"#, "[".repeat(90), "]".repeat(90))));
    }

    #[test]
    fn generated_bodies_never_get_a_different_answer() {
        // Every member of a full body dropped, retyped or repeated, one at a time.
        let base: Value = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"t"}]},{"role":"assistant","content":null,"tool_calls":[{}]}],"temperature":1,"top_p":0.5,"max_tokens":3,"n":2,"stop":"s","stream":false,"stream_options":null,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function"},"response_format":{"type":"text"},"user":"u"}"#,
        )
        .unwrap();
        let replacements = [
            Value::Null,
            Value::Bool(true),
            serde_json::json!(-1),
            serde_json::json!(3.5),
            serde_json::json!("s"),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!([{"role": 1}]),
        ];
        let mut admitted = 0;
        let Value::Object(fields) = &base else { unreachable!() };
        for key in fields.keys() {
            let mut without = base.clone();
            without.as_object_mut().unwrap().shift_remove(key);
            admitted += usize::from(agrees(Operation::ChatCompletions, &without.to_string()));
            for r in &replacements {
                let mut changed = base.clone();
                changed[key] = r.clone();
                admitted += usize::from(agrees(Operation::ChatCompletions, &changed.to_string()));
            }
        }
        assert!(admitted > 20, "{admitted}");
    }
}
