//! The routing strategies over real sessions: many picks through `router::pick` while the
//! deployments' live figures (in flight, this minute's tokens, latency) are set by hand.

use ferrolite::apps::session::{Session, SessionSpec};
use ferrolite::manifest::Manifest;
use ferrolite::router::prices::{cost, price_of, Price};
use ferrolite::router::{self, PickContext};
use serde_json::{json, Value};
use std::time::Duration;

const PICKS: usize = 2_000;

/// No secrets at all: every deployment here is a mock or names no key.
struct NoSecrets;

impl ferrolite::apps::session::SecretSource for NoSecrets {
    fn env(&self, _var: &str) -> Option<String> {
        None
    }

    fn workspace_secret(&self, _key: &str) -> Option<String> {
        None
    }
}

/// A mock deployment of group `m` with extra `litellm_params`.
fn mock(params: Value) -> Value {
    let mut p = json!({"model": "gpt-4o", "mock_response": "hi"});
    p.as_object_mut().unwrap().extend(params.as_object().unwrap().clone());
    json!({"model_name": "m", "litellm_params": p})
}

/// A session whose deployments all serve model `m`, routed by `strategy`.
fn session(strategy: &str, model_list: Vec<Value>) -> Session {
    let manifest: Manifest = serde_json::from_value(json!({
        "name": "Routing", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "routing", "model_list": model_list,
                   "litellm_settings": {"routing_strategy": strategy}}
    }))
    .expect("a valid manifest");
    let spec = SessionSpec {
        id: "s1".into(),
        app_id: "routing".into(),
        workspace: "default".into(),
        manifest: &manifest,
        created: 0,
        public_only: false,
        mcp_http: Default::default(),
    };
    Session::build(spec, &NoSecrets).expect("the session starts")
}

/// How many times each deployment of group `m` is picked in `PICKS` picks.
fn counts(s: &Session, ctx: &PickContext) -> Vec<usize> {
    let indices = s.table.group_indices("m").expect("group m");
    let mut counts = vec![0; s.table.deployments.len()];
    for _ in 0..PICKS {
        counts[router::pick(&s.table, indices, ctx).expect("a pick")] += 1;
    }
    counts
}

fn share(count: usize) -> f64 {
    count as f64 / PICKS as f64
}

#[test]
fn simple_shuffle_follows_weights_then_rpm() {
    let s = session("simple-shuffle", vec![mock(json!({"weight": 1.0})), mock(json!({"weight": 3.0}))]);
    let c = counts(&s, &PickContext::default());
    assert!((share(c[0]) - 0.25).abs() < 0.04, "{c:?}");

    let s = session("simple-shuffle", vec![mock(json!({"rpm": 300})), mock(json!({"rpm": 100}))]);
    let c = counts(&s, &PickContext::default());
    assert!((share(c[1]) - 0.25).abs() < 0.04, "{c:?}");

    let s = session("simple-shuffle", vec![mock(json!({})), mock(json!({}))]);
    let c = counts(&s, &PickContext::default());
    assert!((share(c[0]) - 0.5).abs() < 0.05, "{c:?}");
}

#[test]
fn least_busy_avoids_the_busier_and_spreads_among_equals() {
    let s = session("least-busy", vec![mock(json!({})), mock(json!({})), mock(json!({}))]);
    let busy = [s.table.stats[0].begin(), s.table.stats[0].begin()];
    let c = counts(&s, &PickContext::default());
    assert_eq!(c[0], 0, "{c:?}");
    assert!((share(c[1]) - 0.5).abs() < 0.05, "{c:?}");

    let _one_more = s.table.stats[1].begin();
    let c = counts(&s, &PickContext::default());
    assert_eq!(c, vec![0, 0, PICKS]);

    drop(busy);
    let c = counts(&s, &PickContext::default());
    assert!((share(c[0]) - 0.5).abs() < 0.05 && c[1] == 0, "{c:?}");
}

#[test]
fn usage_based_respects_tpm_and_rpm_then_prefers_the_least_used() {
    for strategy in ["usage-based-routing", "usage-based-routing-v2"] {
        crate::support::within_one_minute(|| usage_based_picks(strategy));
    }
}

/// [`usage_based_respects_tpm_and_rpm_then_prefers_the_least_used`] for one strategy: its figures
/// are this minute's, set by hand, so a run that crosses a minute's end is run again.
fn usage_based_picks(strategy: &str) {
    // The least used this minute, but this request would take it past its tpm.
    let s = session(strategy, vec![mock(json!({"tpm": 1_000})), mock(json!({}))]);
    s.table.stats[0].add_tokens(950);
    s.table.stats[1].add_tokens(5_000);
    let ctx = PickContext { request_tokens: 100, ..Default::default() };
    assert_eq!(counts(&s, &ctx), vec![0, PICKS], "{strategy}");
    // A smaller request still fits.
    let ctx = PickContext { request_tokens: 50, ..Default::default() };
    assert_eq!(counts(&s, &ctx), vec![PICKS, 0], "{strategy}");

    // Under limits the lower usage wins; equals share.
    let s = session(strategy, vec![mock(json!({"tpm": 100_000})), mock(json!({"tpm": 100_000})), mock(json!({}))]);
    s.table.stats[0].add_tokens(300);
    s.table.stats[1].add_tokens(200);
    s.table.stats[2].add_tokens(200);
    let c = counts(&s, &PickContext::default());
    assert_eq!(c[0], 0, "{strategy}: {c:?}");
    assert!((share(c[1]) - 0.5).abs() < 0.05, "{strategy}: {c:?}");

    // rpm: a deployment that had its requests this minute is skipped.
    let s = session(strategy, vec![mock(json!({"rpm": 1})), mock(json!({}))]);
    drop(s.table.stats[0].begin());
    s.table.stats[1].add_tokens(10_000);
    assert_eq!(counts(&s, &PickContext::default()), vec![0, PICKS], "{strategy}");

    // None under its limits: the least used anyway.
    let s = session(strategy, vec![mock(json!({"tpm": 100})), mock(json!({"tpm": 100}))]);
    s.table.stats[0].add_tokens(500);
    s.table.stats[1].add_tokens(400);
    assert_eq!(counts(&s, &PickContext { request_tokens: 10, ..Default::default() }), vec![0, PICKS]);
}

#[test]
fn latency_based_prefers_the_fast_and_spreads_within_the_buffer() {
    let s = session("latency-based-routing", vec![mock(json!({})), mock(json!({})), mock(json!({}))]);
    // Seconds per output token: 0.010, 0.0105 (within 10%), 0.050.
    s.table.stats[0].record_latency(Duration::from_millis(1_000), 100);
    s.table.stats[1].record_latency(Duration::from_millis(1_050), 100);
    s.table.stats[2].record_latency(Duration::from_millis(5_000), 100);
    let ctx = PickContext { latency_buffer: 0.1, ..Default::default() };
    let c = counts(&s, &ctx);
    assert_eq!(c[2], 0, "{c:?}");
    assert!((share(c[0]) - 0.5).abs() < 0.05, "{c:?}");
    // Without a buffer only the fastest.
    assert_eq!(counts(&s, &PickContext::default()), vec![PICKS, 0, 0]);

    // Streams go by time to first token: there the third is fastest.
    s.table.stats[0].record_first_token(Duration::from_millis(900));
    s.table.stats[1].record_first_token(Duration::from_millis(800));
    s.table.stats[2].record_first_token(Duration::from_millis(200));
    assert_eq!(counts(&s, &PickContext { latency_buffer: 0.1, stream: true, ..Default::default() }), vec![0, 0, PICKS]);

    // A deployment with no figure yet counts as 0, so it gets tried.
    let s = session("latency-based-routing", vec![mock(json!({})), mock(json!({}))]);
    s.table.stats[0].record_latency(Duration::from_millis(10), 100);
    assert_eq!(counts(&s, &ctx), vec![0, PICKS]);
}

#[test]
fn cost_based_picks_the_cheapest() {
    // Prices from litellm_params overrides.
    let s = session(
        "cost-based-routing",
        vec![
            mock(json!({"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5})),
            mock(json!({"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7})),
            mock(json!({"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6})),
        ],
    );
    assert_eq!(counts(&s, &PickContext::default()), vec![0, PICKS, 0]);

    // Prices from the table (real providers: nothing is called, only picked).
    let deployment = |model: &str| json!({"model_name": "m", "litellm_params": {"model": model}});
    let s = session(
        "cost-based-routing",
        vec![deployment("gpt-4o"), deployment("openai/gpt-4o-mini"), deployment("anthropic/claude-3-opus-20240229")],
    );
    assert_eq!(counts(&s, &PickContext::default()), vec![0, PICKS, 0]);

    // An unknown price counts as the most expensive; equal prices share.
    let s = session(
        "cost-based-routing",
        vec![deployment("hosted_vllm/mystery-model"), deployment("gpt-4"), deployment("gpt-4-0613")],
    );
    let c = counts(&s, &PickContext::default());
    assert_eq!(c[0], 0, "{c:?}");
    assert!((share(c[1]) - 0.5).abs() < 0.05, "{c:?}");
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn prices_and_costs_of_table_and_overridden_deployments() {
    let deployment = |model: &str, extra: Value| {
        let mut p = json!({"model": model});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"model_name": "m", "litellm_params": p})
    };
    let aws =
        json!({"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret", "aws_region_name": "us-east-1"});
    let s = session(
        "cost-based-routing",
        vec![
            deployment("gpt-4o", json!({})),
            deployment("gpt-4o", json!({"input_cost_per_token": 1e-6})),
            deployment("anthropic/claude-3-5-sonnet-20241022", json!({})),
            deployment("bedrock/us.anthropic.claude-3-haiku-20240307-v1:0", aws),
            mock(json!({})),
            mock(json!({"output_cost_per_token": 2e-6})),
            deployment(
                "hosted_vllm/mystery-model",
                json!({"input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7}),
            ),
            deployment("hosted_vllm/mystery-model", json!({})),
            json!({"model_name": "m", "litellm_params": {"model": "azure/my-deployment", "api_base": "https://x.openai.azure.com"},
                   "model_info": {"base_model": "azure/gpt-4o-mini"}}),
            json!({"model_name": "m", "litellm_params": {"model": "gpt-4o"},
                   "model_info": {"input_cost_per_token": 4e-6, "output_cost_per_token": "8e-6"}}),
        ],
    );
    let p = |i: usize| price_of(&s.table.deployments[i]);
    let price = |input: f64, output: f64| Some(Price { input_per_token: input, output_per_token: output });

    assert_eq!(p(0), price(2.5e-6, 1e-5));
    assert!(close(cost(&s.table.deployments[0], 1_000, 500).unwrap(), 0.0075));
    // An input override alone: the output price still from the table.
    assert_eq!(p(1), price(1e-6, 1e-5));
    assert!(close(cost(&s.table.deployments[1], 1_000, 500).unwrap(), 0.006));
    assert_eq!(p(2), price(3e-6, 1.5e-5));
    assert_eq!(p(3), price(2.5e-7, 1.25e-6));
    assert!(close(cost(&s.table.deployments[3], 2_000_000, 1_000_000).unwrap(), 0.5 + 1.25));
    // Mocks are free unless priced.
    assert_eq!(p(4), price(0.0, 0.0));
    assert_eq!(cost(&s.table.deployments[4], 1_000, 1_000), Some(0.0));
    assert_eq!(p(5), price(0.0, 2e-6));
    assert_eq!(p(6), price(1e-7, 2e-7));
    assert!(close(cost(&s.table.deployments[6], 10, 20).unwrap(), 5e-6));
    assert_eq!(p(7), None);
    assert_eq!(cost(&s.table.deployments[7], 1, 1), None);
    assert_eq!(p(8), price(1.5e-7, 6e-7));
    assert_eq!(p(9), price(4e-6, 8e-6));
}
