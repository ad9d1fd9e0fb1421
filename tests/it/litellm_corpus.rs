//! The corpus: litellm proxy configs from litellm's own documentation
//! (`tests/fixtures/litellm-configs/`, each with its source), each started as
//! `ferrolite serve --config FILE` runs it, every upstream a fake: a request to each model the
//! config names must be answered, and one whose deployments ferrolite cannot call must get a
//! 503 naming why.
//!
//! A test cannot reach the providers the configs name, so the harness changes what points
//! there, and nothing else: each deployment's `api_base` (and a Vertex credential file) points
//! at the fake of its provider, and every `os.environ/` variable, and the variables litellm
//! reads keys from, hold the fakes' credentials.

use crate::fake_anthropic::FakeAnthropic;
use crate::fake_cohere::FakeCohere;
use crate::fake_gemini::FakeGemini;
use crate::fake_ollama::FakeOllama;
use crate::fake_openai::FakeOpenAi;
use crate::fake_vertex::{self, FakeVertex};
use crate::support::{read_json, repo_root, ServeProcess};
use crate::{fake_bedrock, fake_bedrock::FakeBedrock};
use ferrolite::catalogue::providers::resolve_model;
use ferrolite::providers::Provider;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

const KEY: &str = "sk-corpus";
const AWS_KEY_ID: &str = "AKIDCORPUS";
const AWS_SECRET: &str = "corpus-aws-secret";
const REGION: &str = "us-east-1";

/// One fake per provider.
struct Fakes {
    openai: FakeOpenAi,
    azure: FakeOpenAi,
    anthropic: FakeAnthropic,
    gemini: FakeGemini,
    bedrock: FakeBedrock,
    cohere: FakeCohere,
    ollama: FakeOllama,
    vertex: FakeVertex,
    /// A service account's JSON whose `token_uri` is the fake Vertex's.
    vertex_credential: std::path::PathBuf,
}

impl Fakes {
    async fn start(dir: &Path) -> Fakes {
        let vertex = FakeVertex::start().await;
        let vertex_credential = dir.join("service-account.json");
        std::fs::write(&vertex_credential, vertex.credential(&fake_vertex::private_key())).unwrap();
        Fakes {
            openai: FakeOpenAi::start(KEY).await,
            azure: FakeOpenAi::start_azure(KEY).await,
            anthropic: FakeAnthropic::start(KEY).await,
            gemini: FakeGemini::start(KEY).await,
            bedrock: fake_bedrock::start(AWS_KEY_ID, AWS_SECRET, REGION).await,
            cohere: FakeCohere::start(KEY).await,
            ollama: FakeOllama::start().await,
            vertex,
            vertex_credential,
        }
    }

    /// The base a deployment of `provider` is pointed at.
    fn base(&self, provider: Provider) -> Option<String> {
        Some(match provider {
            Provider::OpenAi => self.openai.base_url.clone(),
            Provider::Azure => self.azure.base_url.clone(),
            Provider::Anthropic => self.anthropic.base_url.clone(),
            Provider::Gemini => self.gemini.base_url.clone(),
            Provider::Bedrock => self.bedrock.base_url.clone(),
            Provider::Cohere => self.cohere.base_url.clone(),
            Provider::Ollama | Provider::OllamaChat => self.ollama.base_url.clone(),
            Provider::VertexAi | Provider::VertexAiAnthropic => self.vertex.base_url.clone(),
            Provider::Mock => return None,
        })
    }

    /// What each environment variable the config reads holds: the fakes' credentials.
    fn environment(&self, text: &str) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            ("OPENAI_API_KEY", KEY),
            ("ANTHROPIC_API_KEY", KEY),
            ("AZURE_API_KEY", KEY),
            ("GEMINI_API_KEY", KEY),
            ("COHERE_API_KEY", KEY),
            ("MISTRAL_API_KEY", KEY),
            ("GROQ_API_KEY", KEY),
            ("TOGETHERAI_API_KEY", KEY),
            ("HUGGINGFACE_API_KEY", KEY),
            ("AWS_ACCESS_KEY_ID", AWS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
            ("AWS_REGION", REGION),
            ("AWS_REGION_NAME", REGION),
            ("VERTEXAI_PROJECT", fake_vertex::PROJECT),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.insert("GOOGLE_APPLICATION_CREDENTIALS".into(), self.vertex_credential.display().to_string());
        env.insert("AZURE_API_BASE".into(), self.azure.base_url.clone());
        // Where a catch-all's providers are reached (litellm reads these too).
        env.insert("OPENAI_API_BASE".into(), self.openai.base_url.clone());
        env.insert("ANTHROPIC_API_BASE".into(), self.anthropic.base_url.clone());
        for name in references(text) {
            let value = match name.as_str() {
                n if env.contains_key(n) => continue,
                n if n.ends_with("_API_BASE") => "http://127.0.0.1:9".to_owned(),
                "REDIS_HOST" => "127.0.0.1".to_owned(),
                "REDIS_PORT" => "6379".to_owned(),
                _ => KEY.to_owned(),
            };
            env.insert(name, value);
        }
        env
    }
}

/// The variables a config's `os.environ/NAME` references name.
fn references(text: &str) -> Vec<String> {
    text.split("os.environ/")
        .skip(1)
        .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The config with each deployment pointed at its fake; the providers it could not tell.
fn pointed_at_fakes(config: &mut Value, fakes: &Fakes) -> Vec<String> {
    let mut unknown = Vec::new();
    for entry in config["model_list"].as_array_mut().into_iter().flatten() {
        let params = &mut entry["litellm_params"];
        let model = params["model"].as_str().unwrap_or_default().to_owned();
        if params.get("mock_response").is_some() {
            continue;
        }
        // Credentials written in the config are the fakes' too.
        for key in ["api_key", "azure_ad_token"] {
            if params[key].as_str().is_some_and(|v| !v.starts_with("os.environ/")) {
                params[key] = json!(KEY);
            }
        }
        if model == "*" {
            continue; // a catch-all: reached through the environment
        }
        match resolve_model(&model) {
            Some(r) => {
                if let Some(base) = fakes.base(r.provider) {
                    params["api_base"] = json!(base);
                }
                if params.get("vertex_credentials").is_some() {
                    params["vertex_credentials"] = json!(fakes.vertex_credential.display().to_string());
                }
                // The project is part of the address: the fake's own.
                for key in ["vertex_project", "vertex_ai_project"] {
                    if params.get(key).is_some() {
                        params[key] = json!(fake_vertex::PROJECT);
                    }
                }
            }
            None => unknown.push(entry["model_name"].as_str().unwrap_or_default().to_owned()),
        }
    }
    unknown
}

/// The requests the corpus sends for one model name, each with the status it expects.
fn requests_for(file: &str, name: &str, model: &str, unknown: bool) -> Vec<(&'static str, Value, u16)> {
    let chat = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "Hello"}]});
    if model == "*" {
        // A catch-all sends a model to the provider its name tells, with the environment's
        // credentials: OpenAI's and Anthropic's are set; xAI's are not (503), and a name that
        // tells no provider is the client's mistake (400).
        return vec![
            ("/v1/chat/completions", chat("gpt-4o-mini"), 200),
            ("/v1/chat/completions", chat("claude-3-5-haiku-latest"), 200),
            ("/v1/chat/completions", chat("anthropic/claude-3-5-haiku-latest"), 200),
            ("/v1/chat/completions", chat("xai/grok-2"), 503),
            ("/v1/chat/completions", chat("no-provider-model"), 400),
        ];
    }
    let by_design = EXPECTED.iter().find(|e| e.0 == file && e.1 == name).map(|e| e.2);
    let expected = if unknown { 503 } else { by_design.unwrap_or(200) };
    let concrete = name.replace('*', "corpus-model");
    let lower = format!("{name} {model}").to_ascii_lowercase();
    let request = if lower.contains("rerank") || lower.contains("llama-rank") {
        ("/v1/rerank", json!({"model": concrete, "query": "which?", "documents": ["this one", "that one"]}), expected)
    } else if lower.contains("embed") {
        ("/v1/embeddings", json!({"model": concrete, "input": "hello"}), expected)
    } else {
        ("/v1/chat/completions", chat(&concrete), expected)
    };
    vec![request]
}

/// Models a config serves otherwise than with a 200 by design (config, model name, status), and
/// why.
const EXPECTED: &[(&str, &str, u16)] = &[
    // A budget of $0.000000000001 holds no request's worst case, so ferrolite refuses the first
    // request (litellm lets it through and refuses the next, once the budget is spent).
    ("15-model-budgets.yaml", "gpt-4o", 429),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_litellm_documentation_config_starts_and_each_of_its_models_answers() {
    let dir = tempfile::tempdir().unwrap();
    let fakes = Fakes::start(dir.path()).await;
    let corpus = repo_root().join("tests/fixtures/litellm-configs");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 16, "the corpus has its configs: {files:?}");

    let mut failures = Vec::new();
    let mut answered = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.starts_with("# source: "), "{name} notes its source");
        let mut config = ferrolite::manifest::validate::load_file(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let unknown = pointed_at_fakes(&mut config, &fakes);
        let path = dir.path().join(&name);
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        let env = fakes.environment(&text);
        let data = dir.path().join(format!("data-{name}"));
        let args = ["--port".to_owned(), "0".to_owned(), "--config".into(), path.display().to_string()];
        let server = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ServeProcess::spawn_with_env(&args, &data, &env)
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: ferrolite did not start"));
        let token = config["general_settings"]["master_key"].as_str().map_or(server.token.clone(), str::to_owned);

        let mut names: Vec<(String, String)> = Vec::new();
        for entry in config["model_list"].as_array().into_iter().flatten() {
            let model_name = entry["model_name"].as_str().unwrap_or_default().to_owned();
            if !names.iter().any(|(n, _)| *n == model_name) {
                names.push((model_name, entry["litellm_params"]["model"].as_str().unwrap_or_default().to_owned()));
            }
        }
        let client = reqwest::Client::new();
        for (model_name, model) in &names {
            for (route, body, expected) in requests_for(&name, model_name, model, unknown.contains(model_name)) {
                let response = client
                    .post(format!("{}{route}", server.base))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let (status, answer) = read_json(response).await;
                let code = answer["error"]["code"].as_str().unwrap_or_default();
                let wanted_code = match expected {
                    503 => "deployment_unavailable",
                    429 => "budget_exceeded",
                    400 => "invalid_model",
                    _ => "",
                };
                if status != expected || code != wanted_code {
                    failures.push(format!("{name}: {model_name} ({model}) {route} {}: {status} {code:?}, expected {expected} {wanted_code:?}: {answer}", body["model"]));
                } else {
                    answered += 1;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of the corpus's requests failed:\n{}", failures.len(), failures.join("\n"));
    assert!(answered >= 30, "every config sent its models' requests ({answered})");
}
