//! The `llm-proxy` app manifest: Rust types, their JSON Schema, and validation.
//!
//! The types mirror the manifests of Hypha's LLM proxy page (and litellm's `model_list` /
//! `litellm_settings`). Unknown keys are kept in `extra` maps so nothing a newer manifest says
//! is silently dropped; `schema/manifest.schema.json` is generated from these types.

pub mod litellm;
pub mod pass_through;
pub mod validate;
pub mod yaml11;

use ferrolite_codegen::wire_enum;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// An app manifest of `type: "llm-proxy"`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "ferrolite llm-proxy app manifest")]
pub struct Manifest {
    /// The app's id (default: its name made URL-safe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::grammar::NAME.pattern))]
    pub id: Option<String>,
    /// Human-readable name of the app.
    pub name: String,
    /// The app type; ferrolite runs `llm-proxy` apps.
    #[serde(rename = "type")]
    pub app_type: AppType,
    /// The app's version, free-form (e.g. "1.0.0").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub config: ProxyConfig,
    /// Other manifest keys, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The only app type ferrolite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AppType {
    #[serde(rename = "llm-proxy")]
    LlmProxy,
}

/// The `config` block of an llm-proxy manifest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProxyConfig {
    /// Where the service answers: `/{workspace}/apps/{service_id}/v1/...`. Default `llm-{session_id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::grammar::NAME.pattern))]
    pub service_id: Option<String>,
    /// Who may call the service: `protected` (its own workspace, the default) or `public` (any valid token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// The deployments; entries that share a `model_name` are load-balanced.
    pub model_list: Vec<ModelEntry>,
    #[serde(default)]
    pub litellm_settings: LitellmSettings,
    /// litellm's router settings: the routing settings of `litellm_settings`, winning over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_settings: Option<RoutingSettings>,
    /// MCP servers served together at `/{workspace}/apps/{service_id}/mcp`, their tools named
    /// `{server}-{tool}` (litellm's key). Names keep to MCP's tool-name characters (SEP-986).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": MCP_SERVER_NAME_PATTERN}))]
    pub mcp_servers: BTreeMap<String, McpServer>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An MCP server name: SEP-986's tool-name characters, short enough that `{server}-{tool}` of a
/// tool of 63 characters is still a valid tool name (at most 128).
pub const MCP_SERVER_NAME_PATTERN: &str = "^[A-Za-z0-9_.-]{1,64}$";

/// One upstream MCP server of an app (litellm's `mcp_servers` entry).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct McpServer {
    /// The server's MCP endpoint: `https://host/mcp` (Streamable HTTP) or its `/sse` (HTTP+SSE).
    #[schemars(regex(pattern = r"^(https?://|os\.environ/|HYPHA_SECRET:)"))]
    pub url: String,
    #[serde(default)]
    pub transport: McpTransport,
    #[serde(default)]
    pub auth_type: McpAuthType,
    /// The credential `auth_type` sends; `os.environ/VAR` or `HYPHA_SECRET:KEY`, resolved at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_value: Option<String>,
    /// Extra headers sent to the server; values may be secret references too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Only these tools (the server's own names) are listed and callable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    /// These tools are neither listed nor callable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disallowed_tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How ferrolite talks to an upstream MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum McpTransport {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    #[default]
    Http,
    /// The older HTTP+SSE transport (MCP 2024-11-05).
    Sse,
}

/// How an upstream MCP server is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum McpAuthType {
    #[default]
    None,
    /// `Authorization: Bearer {auth_value}`.
    BearerToken,
    /// `X-API-Key: {auth_value}`.
    ApiKey,
    /// `Authorization: Basic {auth_value}` (`user:password`, or already base64).
    Basic,
}

/// Who may call a running service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Protected,
    Public,
}

/// One deployment: a friendly `model_name` and how to reach the model behind it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelEntry {
    /// The name clients put in `model`.
    #[schemars(pattern(crate::grammar::MODEL_NAME.pattern))]
    pub model_name: String,
    pub litellm_params: LitellmParams,
    /// Metadata about the model (id, mode, prices, ...), returned by /v1/model/info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_info: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// litellm's per-deployment parameters. Secret values may be written `os.environ/VAR` or
/// `HYPHA_SECRET:KEY`; they are resolved when the app starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct LitellmParams {
    /// Provider model string: `gpt-4`, `anthropic/claude-3-opus-20240229`, `bedrock/...`, `hosted_vllm/...`.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Overrides the provider's default base URL (OpenAI-compatible servers, Azure, proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Answer every request with this text instead of calling a provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock_response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region_name: Option<String>,
    /// Vertex AI: the Google Cloud project (else the credential's `project_id`, else
    /// `VERTEXAI_PROJECT`). litellm also reads it as `vertex_ai_project`.
    #[serde(default, alias = "vertex_ai_project", skip_serializing_if = "Option::is_none")]
    pub vertex_project: Option<String>,
    /// Vertex AI: the location, e.g. `us-central1` or `global` (else `VERTEXAI_LOCATION`, else
    /// `us-central1`). litellm also reads it as `vertex_ai_location`.
    #[serde(default, alias = "vertex_ai_location", skip_serializing_if = "Option::is_none")]
    pub vertex_location: Option<String>,
    /// Vertex AI: a service account's JSON credential, as text or as the path of its file (a path
    /// only for apps installed with an admin token); else `GOOGLE_APPLICATION_CREDENTIALS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex_credentials: Option<String>,
    /// Requests per minute this deployment may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute this deployment may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Relative share of traffic under simple-shuffle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub weight: Option<f64>,
    /// Whole-request timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub timeout: Option<f64>,
    /// Gap allowed between stream chunks, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub stream_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub input_cost_per_token: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub output_cost_per_token: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_budget: Option<f64>,
    /// The period this deployment's `max_budget` applies to: `30d`, `24h`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*[0-9]+(s|m|min|h|d|w|mo)\s*$"))]
    pub budget_duration: Option<String>,
    /// Output tokens held against budgets for a request that sets no `max_tokens` /
    /// `max_completion_tokens` / `max_output_tokens` (default 4096): its worst case, priced at
    /// the output price until the real cost is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reserved_tokens: Option<u64>,
    /// An OpenAI-compatible server without `/v1/responses`: Responses requests are translated to
    /// chat completions. Defaults to true for prefixes of servers known to lack the route
    /// (`hosted_vllm/`, `lm_studio/`, ...), false otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_chat_completions_api: Option<bool>,
    /// Other provider parameters, passed on as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// litellm's proxy-wide settings: logging and parameter handling, and the routing settings
/// it shares with `router_settings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct LitellmSettings {
    /// Log each request's route, model, deployment, status and latency.
    #[serde(default)]
    pub debug: bool,
    /// Also log request and response bodies (never keys).
    #[serde(default)]
    pub detailed_debug: bool,
    #[serde(default)]
    pub user_debug: bool,
    /// Drop request parameters a provider does not support instead of failing with 400.
    #[serde(default)]
    pub drop_params: bool,
    /// Answer repeated requests from a response cache (see `cache_params`).
    #[serde(default)]
    pub cache: bool,
    /// How the response cache keeps its entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_params: Option<CacheParams>,
    #[serde(flatten)]
    pub routing: RoutingSettings,
}

/// Where cached answers live. litellm's other caches (semantic ones, object stores, disk) are
/// accepted as its configs name them and served by the local exact-match cache, which
/// `validate` says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CacheType {
    /// In this process, bounded by `max_size_in_memory`.
    #[default]
    Local,
    /// In the server's `--redis-url` Redis, shared by every instance (local without one).
    Redis,
    RedisSemantic,
    QdrantSemantic,
    S3,
    Gcs,
    Disk,
    AzureBlob,
}

impl CacheType {
    /// Whether ferrolite keeps this kind of cache itself (the others run as `local`).
    pub fn is_served(self) -> bool {
        matches!(self, CacheType::Local | CacheType::Redis)
    }
}

/// litellm's `cache_params`. Redis connection fields (`host`, `port`, `password`, ...) are kept
/// but ignored: the cache uses the server's own `--redis-url`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct CacheParams {
    #[serde(default, rename = "type")]
    pub kind: CacheType,
    /// Seconds an entry lives (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub ttl: Option<f64>,
    /// Prefix of the Redis keys, so apps (or deployments of ferrolite) can keep apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z0-9_.:-]{1,64}$"))]
    pub namespace: Option<String>,
    /// litellm call types cached (default all that ferrolite caches): `completion`,
    /// `acompletion`, `text_completion`, `atext_completion`, `embedding`, `aembedding`; litellm's
    /// other call types are accepted and not cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_call_types: Option<Vec<CallType>>,
    /// Entries kept in memory at most (default 1000), the least recently used dropped first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_size_in_memory: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A litellm call type, as `supported_call_types` names them. The response cache serves the
/// completion, text completion and embedding calls; the others are accepted (litellm's
/// configs name them) and not cached, which `validate` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    Completion,
    Acompletion,
    TextCompletion,
    AtextCompletion,
    Embedding,
    Aembedding,
    Transcription,
    Atranscription,
    Speech,
    Aspeech,
    Rerank,
    Arerank,
    Responses,
    Aresponses,
    ImageGeneration,
    AimageGeneration,
    Moderation,
    Amoderation,
}

impl CallType {
    /// Whether the response cache serves calls of this type.
    pub fn is_cached(self) -> bool {
        matches!(
            self,
            CallType::Completion
                | CallType::Acompletion
                | CallType::TextCompletion
                | CallType::AtextCompletion
                | CallType::Embedding
                | CallType::Aembedding
        )
    }
}

/// The group a `model_group_alias` entry names, and whether `/v1/models` lists the alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GroupAlias {
    Name(String),
    Entry {
        model: String,
        #[serde(default)]
        hidden: bool,
    },
}

impl GroupAlias {
    /// The model group it routes to.
    pub fn group(&self) -> &str {
        match self {
            GroupAlias::Name(model) | GroupAlias::Entry { model, .. } => model,
        }
    }

    /// Whether `/v1/models` leaves it out.
    pub fn hidden(&self) -> bool {
        matches!(self, GroupAlias::Entry { hidden: true, .. })
    }
}

/// How requests are routed and failures handled: accepted in `litellm_settings` and in
/// `router_settings` (which wins where both set one). Durations are in seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RoutingSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_strategy: Option<RoutingStrategy>,
    /// Options of the routing strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_strategy_args: Option<RoutingStrategyArgs>,
    /// Retries on another deployment after a retryable failure (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub num_retries: Option<u32>,
    /// Whole-request timeout in seconds, all attempts included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub timeout: Option<f64>,
    /// litellm's other name for `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub request_timeout: Option<f64>,
    /// Longest silence allowed between two chunks of a stream, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub stream_timeout: Option<f64>,
    /// Failures a deployment may have in a minute before it cools down (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_fails: Option<u64>,
    /// How long a failing deployment sits out, in seconds (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub cooldown_time: Option<f64>,
    /// The first retry's backoff in seconds, doubled each retry, with jitter (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 60.0))]
    pub retry_backoff: Option<f64>,
    /// Model groups to try, in order, once a group's retries are used up: `[{"gpt-4": ["claude-3-opus"]}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<Vec<BTreeMap<String, Vec<String>>>>,
    /// Other names of model groups: `{"gpt-4": "gpt-4o"}` routes `gpt-4` to the `gpt-4o` group;
    /// `{"gpt-4": {"model": "gpt-4o", "hidden": true}}` leaves the alias out of `/v1/models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_group_alias: Option<BTreeMap<String, GroupAlias>>,
    /// Fallbacks for a prompt too long for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window_fallbacks: Option<Vec<BTreeMap<String, Vec<String>>>>,
    /// Fallbacks for content the provider refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_policy_fallbacks: Option<Vec<BTreeMap<String, Vec<String>>>>,
    /// Makes each deployment's `rpm` / `tpm` hard limits (429) rather than routing weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_model_rate_limits: Option<bool>,
    /// How often `: keep-alive` goes out while a stream waits for its first token, in seconds
    /// (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.1))]
    pub stream_keepalive_interval: Option<f64>,
    /// Spend limit for the app, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_budget: Option<f64>,
    /// The period `max_budget` applies to: `30d`, `7d`, `24h`, `90m`, `45s` (all time when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*[0-9]+(s|m|min|h|d|w|mo)\s*$"))]
    pub budget_duration: Option<String>,
    /// How long, in seconds, a request's budget reservation outlives an instance that died
    /// holding it (with `--redis-url`). Default: the longest `timeout` of the app and its
    /// deployments (600 s when unset) plus 300 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0))]
    pub budget_reservation_ttl: Option<f64>,
    /// Settings ferrolite does not honour, kept as written (each is a warning at install).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `routing_strategy_args`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RoutingStrategyArgs {
    /// latency-based-routing: deployments within this fraction of the fastest count as equals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub lowest_latency_buffer: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

wire_enum! {
    /// How requests are spread over deployments that share a `model_name`.
    pub enum RoutingStrategy {
        SimpleShuffle = "simple-shuffle",
        LeastBusy = "least-busy",
        UsageBasedRouting = "usage-based-routing",
        UsageBasedRoutingV2 = "usage-based-routing-v2",
        LatencyBasedRouting = "latency-based-routing",
        CostBasedRouting = "cost-based-routing",
    }
}

impl JsonSchema for RoutingStrategy {
    fn schema_name() -> Cow<'static, str> {
        "RoutingStrategy".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = RoutingStrategy::ALL.iter().map(|s| s.as_str()).collect();
        schemars::json_schema!({
            "description": "How requests are spread over deployments that share a model_name (default simple-shuffle).",
            "type": "string",
            "enum": names,
        })
    }
}

/// The manifest's JSON Schema, as checked in at `schema/manifest.schema.json`.
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(Manifest);
    schema.to_value()
}

/// The schema, pretty-printed with a trailing newline: the exact checked-in file contents.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}
