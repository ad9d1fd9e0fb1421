//! One model turn of the loop: the request as this turn sends it, through the same failover
//! path a client's request takes (retries, fallbacks, budgets, spend per turn), never
//! streamed; the answer read whole. What the turns cost adds up for the client's answer.

use super::AgentError;
use crate::exchange::{parse_json, ApiError, Outcome, Payload, Usage};
use crate::router::plan::Target;
use crate::router::stamp::COST_HEADER;
use crate::router::{failover, Routed};
use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};
use std::time::Instant;

/// Where the turns go.
#[derive(Clone, Copy)]
pub struct Model<'a> {
    pub routed: Routed<'a>,
    pub target: Target<'a>,
}

/// A turn's answer.
pub enum Answer {
    /// A 2xx JSON answer.
    Json(Value),
    /// Anything else (an upstream's error passed on as it came): the client gets it as is.
    Other(Outcome),
}

/// What the turns so far add up to.
#[derive(Debug, Default)]
pub struct Totals {
    pub turns: usize,
    pub usage: Option<Usage>,
    /// The answers' `usage` objects, summed field by field.
    pub usage_json: Option<Value>,
    cost: Option<f64>,
    pub deployment: Option<usize>,
    /// The last turn's headers (`x-ferrolite-*`), for the client's answer.
    pub headers: HeaderMap,
}

impl Totals {
    /// `headers` for the client's answer: the last turn's, its cost the sum of every turn's.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::CONTENT_TYPE);
        headers.remove(header::TRANSFER_ENCODING);
        headers.remove(header::CONTENT_ENCODING);
        if let Some(cost) = self.cost {
            headers.insert(COST_HEADER, crate::router::stamp::cost_value(cost));
        }
        headers
    }

    /// An outcome carrying `response`, with what the turns add up to.
    pub fn outcome(&self, mut response: axum::response::Response) -> Outcome {
        for (name, value) in &self.headers() {
            response.headers_mut().insert(name, value.clone());
        }
        Outcome { response, deployment: self.deployment, usage: self.usage }
    }
}

impl Model<'_> {
    /// Sends `body` as one turn (`stream` off) and reads its answer.
    pub async fn ask(&self, mut body: Map<String, Value>, totals: &mut Totals) -> Result<Answer, ApiError> {
        body.insert("stream".into(), Value::Bool(false));
        body.remove("stream_options");
        // Each turn has the deadline and overhead of its own.
        let routed = Routed { started: Instant::now(), ..self.routed };
        let outcome = failover::serve(routed, self.target, Payload::json(Value::Object(body))).await?;
        totals.turns += 1;
        let is_json = outcome
            .response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !outcome.response.status().is_success() || !is_json {
            return Ok(Answer::Other(outcome));
        }
        let Outcome { response, deployment, usage } = outcome;
        let (parts, mut body) = response.into_parts();
        let bytes = crate::exchange::whole(&mut body, self.routed.answer_limit)
            .await
            .map_err(|e| ApiError::from(AgentError::Answer(e.to_string())))?;
        let answer: Value = parse_json(&bytes).map_err(|e| ApiError::from(AgentError::Answer(e.to_string())))?;
        totals.deployment = deployment.or(totals.deployment);
        if let Some(usage) = usage {
            let sum = totals.usage.get_or_insert_with(Usage::default);
            sum.prompt_tokens += usage.prompt_tokens;
            sum.completion_tokens += usage.completion_tokens;
            sum.cached_tokens += usage.cached_tokens;
        }
        if let Some(step) = answer.get("usage").filter(|u| u.is_object()) {
            match &mut totals.usage_json {
                Some(sum) => add_numbers(sum, step),
                None => totals.usage_json = Some(step.clone()),
            }
        }
        let cost = parts.headers.get(COST_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok());
        if let Some(cost) = cost {
            *totals.cost.get_or_insert(0.0) += cost;
        }
        totals.headers = parts.headers;
        Ok(Answer::Json(answer))
    }
}

/// Adds the numbers of `step` to those of `sum`, field by field (nested objects too); fields
/// only `step` has are taken as they are.
fn add_numbers(sum: &mut Value, step: &Value) {
    match (sum, step) {
        (Value::Object(sum), Value::Object(step)) => {
            for (key, value) in step {
                match sum.get_mut(key) {
                    Some(existing) => add_numbers(existing, value),
                    None => {
                        sum.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (sum @ Value::Number(_), Value::Number(step)) => {
            if let (Some(a), Some(b)) = (sum.as_u64(), step.as_u64()) {
                *sum = Value::from(a.saturating_add(b));
            } else if let (Some(a), Some(b)) = (sum.as_f64(), step.as_f64()) {
                *sum = Value::from(a + b);
            }
        }
        (sum @ Value::Null, step) => *sum = step.clone(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_adds_up_field_by_field() {
        let mut sum = json!({"input_tokens": 10, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 0}});
        add_numbers(
            &mut sum,
            &json!({"input_tokens": 15, "output_tokens": 5, "input_tokens_details": {"cached_tokens": 4}, "total_tokens": 20}),
        );
        assert_eq!(
            sum,
            json!({"input_tokens": 25, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 4}, "total_tokens": 20})
        );
    }
}
