//! Turns the endpoint catalogue (`endpoints/*.yaml`) and the provider table (`providers.yaml`)
//! into Rust and OpenAPI at build time.
//!
//! Every catalogue file is checked against `schema/catalogue.schema.json` and a few cross-file
//! rules (unique operations and paths, upstream templates naming known parameters, schemas that
//! compile, providers the table names and translators their provider lists). Any problem fails
//! the build with the file, the route and the reason. Output, in `OUT_DIR`:
//! - `catalogue.rs`: data only: the `Operation`, `Translator` and `LocalHandler` enums, the
//!   static route table and `plain_operation`, the match of parameter-free paths the request
//!   path uses first (included by `runtime/catalogue/mod.rs`, a leaf);
//! - `providers.rs`: the `Provider` enum and its spec table (`runtime/catalogue/providers.rs`);
//! - `http_routes.rs`: the axum glue, one handler per route (via
//!   `ferrolite_codegen::route_handler!`) and `method_router` (included by `runtime/http/routes.rs`);
//! - `openapi.json`: an OpenAPI 3.1 document of the same routes.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const META_SCHEMA: &str = "schema/catalogue.schema.json";
const CATALOGUE_DIR: &str = "endpoints";
const PROVIDERS_FILE: &str = "providers.yaml";

#[derive(Deserialize)]
struct FamilyFile {
    family: String,
    description: String,
    routes: Vec<RouteDef>,
}

#[derive(Deserialize)]
struct RouteDef {
    op: String,
    summary: String,
    method: String,
    path: String,
    #[serde(default)]
    also_bare: bool,
    request: RequestDef,
    response: ResponseDef,
    local: Option<String>,
    providers: Option<BTreeMap<String, ProviderRouteDef>>,
}

#[derive(Deserialize)]
struct RequestDef {
    kind: String,
    model_field: Option<String>,
    schema: Option<Value>,
}

#[derive(Deserialize)]
struct ResponseDef {
    kind: String,
    content_type: Option<String>,
    schema: Value,
}

#[derive(Deserialize)]
struct ProviderRouteDef {
    upstream: Option<String>,
    stream_upstream: Option<String>,
    translate: String,
}

pub struct Route {
    family: String,
    def: RouteDef,
}

/// `providers.yaml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderTable {
    openai_chat_params: Vec<String>,
    providers: BTreeMap<String, ProviderDef>,
    prefixes: Vec<PrefixDef>,
    families: Vec<FamilyDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderDef {
    /// The Rust variant, where plain camel case of the name will not do (`OpenAi`).
    variant: Option<String>,
    summary: String,
    auth: AuthDef,
    /// `all` (every OpenAI chat parameter) or a list.
    chat_params: Value,
    translators: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "scheme", rename_all = "lowercase")]
enum AuthDef {
    Bearer,
    Header {
        name: String,
    },
    Anthropic {
        version: String,
    },
    Sigv4 {
        service: String,
    },
    /// A Google OAuth access token from a service account (the JWT-bearer grant).
    Google,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixDef {
    prefix: String,
    provider: String,
    api_base: Option<String>,
    /// An OpenAI-compatible server with chat completions but no Responses API.
    #[serde(default)]
    chat_only: bool,
    /// The entry applies to models (after the prefix) starting with this only, so one prefix
    /// can name several providers (`vertex_ai/claude-*` and `vertex_ai/gemini-*`).
    model_starts_with: Option<String>,
    /// Environment variables litellm reads the key from when the deployment sets none (the
    /// first that is set).
    #[serde(default)]
    api_key_env: Vec<String>,
    /// The environment variable litellm reads the base URL from when the deployment sets none.
    api_base_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyDef {
    starts_with: String,
    prefix: String,
}

fn main() {
    println!("cargo:rerun-if-changed={CATALOGUE_DIR}");
    println!("cargo:rerun-if-changed={META_SCHEMA}");
    println!("cargo:rerun-if-changed={PROVIDERS_FILE}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let fail = |what: &str, errors: Vec<String>| -> ! {
        eprintln!("{what} is invalid:");
        for e in &errors {
            eprintln!("  {e}");
        }
        std::process::exit(1);
    };
    let table = load_providers(Path::new(PROVIDERS_FILE)).unwrap_or_else(|e| fail("the provider table", e));
    let (routes, families) = load_catalogue(Path::new(CATALOGUE_DIR), Path::new(META_SCHEMA))
        .unwrap_or_else(|e| fail("the endpoint catalogue", e));
    let mismatches = check_translators(Path::new(CATALOGUE_DIR), &routes, &table);
    if !mismatches.is_empty() {
        fail("the endpoint catalogue", mismatches);
    }
    write(&out_dir.join("catalogue.rs"), &generate_rust(&routes, &table));
    write(&out_dir.join("providers.rs"), &generate_providers(&table, &routes));
    write(&out_dir.join("http_routes.rs"), &generate_http_glue(&routes));
    let openapi = serde_json::to_string_pretty(&generate_openapi(&routes, &families)).expect("serialisable");
    write(&out_dir.join("openapi.json"), &(openapi + "\n"));
}

fn write(path: &Path, contents: &str) {
    if let Err(e) = std::fs::write(path, contents) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}

pub type Catalogue = (Vec<Route>, BTreeMap<String, String>);

/// Reads and checks every catalogue file; returns all problems found, not only the first.
pub fn load_catalogue(dir: &Path, meta_schema: &Path) -> Result<Catalogue, Vec<String>> {
    let meta_name = meta_schema.display();
    let meta: Value = std::fs::read_to_string(meta_schema)
        .map_err(|e| format!("{meta_name}: {e}"))
        .and_then(|s| serde_json::from_str(&s).map_err(|e| format!("{meta_name}: {e}")))
        .map_err(|e| vec![e])?;
    let validator = jsonschema::validator_for(&meta).map_err(|e| vec![format!("{meta_name}: {e}")])?;

    let dir_name = dir.display();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| vec![format!("{dir_name}/: {e}")])?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(vec![format!("{dir_name}/: no *.yaml files")]);
    }

    let mut errors = Vec::new();
    let mut routes = Vec::new();
    let mut families = BTreeMap::new();
    for file in &files {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let value: Value = match serde_yaml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{name}: not valid YAML: {e}"));
                continue;
            }
        };
        let schema_errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{name}: {}: {}", describe_location(&value, &e.instance_path().to_string()), e))
            .collect();
        if !schema_errors.is_empty() {
            errors.extend(schema_errors);
            continue;
        }
        let parsed: FamilyFile = match serde_json::from_value(value) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if parsed.family != stem {
            errors.push(format!("{name}: family {:?} must equal the file name {stem:?}", parsed.family));
        }
        families.insert(parsed.family.clone(), parsed.description.clone());
        for def in parsed.routes {
            check_route(&name, &def, &mut errors);
            routes.push(Route { family: parsed.family.clone(), def });
        }
    }

    let mut ops = BTreeSet::new();
    let mut paths = BTreeSet::new();
    for r in &routes {
        if !ops.insert(r.def.op.clone()) {
            errors.push(format!("{dir_name}/{}.yaml: route {}: operation name used twice", r.family, r.def.op));
        }
        let mut served = vec![r.def.path.clone()];
        if r.def.also_bare {
            served.push(bare_path(&r.def.path).unwrap_or_default());
        }
        for path in served {
            if !paths.insert((r.def.method.clone(), path.clone())) {
                errors.push(format!(
                    "{dir_name}/{}.yaml: route {}: {} {path} is served twice",
                    r.family, r.def.op, r.def.method
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok((routes, families))
    } else {
        Err(errors)
    }
}

/// Reads `providers.yaml` and checks what its shape cannot say: known translators and
/// prefixes, parameters OpenAI has, every provider reachable.
fn load_providers(path: &Path) -> Result<ProviderTable, Vec<String>> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{name}: {e}")])?;
    let table: ProviderTable = serde_yaml::from_str(&text).map_err(|e| vec![format!("{name}: {e}")])?;
    let mut errors = Vec::new();
    for (provider, def) in &table.providers {
        match &def.chat_params {
            Value::String(all) if all == "all" => {}
            Value::Array(list) => {
                for p in list {
                    match p.as_str() {
                        Some(p) if table.openai_chat_params.iter().any(|k| k == p) => {}
                        _ => errors.push(format!(
                            "{name}: provider {provider}: chat_params names {p}, which is not in openai_chat_params"
                        )),
                    }
                }
            }
            other => {
                errors.push(format!("{name}: provider {provider}: chat_params must be `all` or a list, not {other}"))
            }
        }
        if def.translators.is_empty() {
            errors.push(format!("{name}: provider {provider}: lists no translators"));
        }
    }
    for p in &table.prefixes {
        if !table.providers.contains_key(&p.provider) {
            errors.push(format!("{name}: prefix {}: unknown provider {:?}", p.prefix, p.provider));
        }
    }
    for f in &table.families {
        if !table.prefixes.iter().any(|p| p.prefix == f.prefix) {
            errors.push(format!("{name}: family {}: unknown prefix {:?}", f.starts_with, f.prefix));
        }
    }
    if errors.is_empty() {
        Ok(table)
    } else {
        Err(errors)
    }
}

/// Every route's providers are in the table, and each names a translator its provider lists
/// (a swapped name, `translate: gemini_chat` under `anthropic:`, fails here).
fn check_translators(dir: &Path, routes: &[Route], table: &ProviderTable) -> Vec<String> {
    let mut errors = Vec::new();
    for r in routes {
        let file = format!("{}/{}.yaml", dir.display(), r.family);
        for (provider, route) in r.def.providers.iter().flatten() {
            match table.providers.get(provider) {
                None => errors.push(format!(
                    "{file}: route {}: provider {provider} is not in {PROVIDERS_FILE} (known: {})",
                    r.def.op,
                    table.providers.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
                Some(def) if !def.translators.contains(&route.translate) => errors.push(format!(
                    "{file}: route {}: provider {provider} does not run translator {:?}; {PROVIDERS_FILE} lists {}",
                    r.def.op,
                    route.translate,
                    def.translators.join(", ")
                )),
                Some(_) => {}
            }
        }
    }
    errors
}

fn provider_variant(name: &str, def: &ProviderDef) -> String {
    def.variant.clone().unwrap_or_else(|| camel(name))
}

fn str_list(items: &[String]) -> String {
    items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
}

fn generate_providers(table: &ProviderTable, routes: &[Route]) -> String {
    let mut out = String::from("// @generated by build.rs from providers.yaml. Do not edit.\n\n");
    out += "ferrolite_codegen::wire_enum! {\n    /// The wire protocols ferrolite speaks upstream.\n    pub enum Provider {\n";
    for (name, def) in &table.providers {
        let _ = writeln!(out, "        /// {}\n        {} = {name:?},", def.summary, provider_variant(name, def));
    }
    out += "    }\n}\n\n";
    let _ = writeln!(
        out,
        "/// The OpenAI chat parameters ferrolite knows.\npub static OPENAI_CHAT_PARAMS: &[&str] = &[{}];\n",
        str_list(&table.openai_chat_params)
    );
    // Translators as the catalogue's enum names them (only those some route uses exist).
    let used: BTreeSet<String> =
        routes.iter().flat_map(|r| r.def.providers.iter().flatten().map(|(_, p)| p.translate.clone())).collect();
    let _ = writeln!(
        out,
        "/// Each provider's spec, indexed by `Provider as usize`.\npub static SPECS: [ProviderSpec; {}] = [",
        table.providers.len()
    );
    for (name, def) in &table.providers {
        let auth = match &def.auth {
            AuthDef::Bearer => "AuthScheme::Bearer".to_owned(),
            AuthDef::Header { name } => format!("AuthScheme::Header({name:?})"),
            AuthDef::Anthropic { version } => format!("AuthScheme::Anthropic {{ version: {version:?} }}"),
            AuthDef::Sigv4 { service } => format!("AuthScheme::SigV4 {{ service: {service:?} }}"),
            AuthDef::Google => "AuthScheme::GoogleOAuth".to_owned(),
            AuthDef::None => "AuthScheme::None".to_owned(),
        };
        let params = match &def.chat_params {
            Value::Array(list) => format!(
                "&[{}]",
                list.iter().filter_map(Value::as_str).map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
            ),
            _ => "OPENAI_CHAT_PARAMS".to_owned(),
        };
        let translators = def
            .translators
            .iter()
            .filter(|t| used.contains(*t))
            .map(|t| format!("Translator::{}", camel(t)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "    ProviderSpec {{ provider: Provider::{}, auth: {auth}, chat_params: {params}, translators: &[{translators}] }},",
            provider_variant(name, def)
        );
    }
    out += "];\n\n/// litellm's `provider/` prefixes.\npub static PREFIXES: &[Prefix] = &[\n";
    for p in &table.prefixes {
        let def = &table.providers[&p.provider];
        let base = p.api_base.as_ref().map(|b| format!("Some({b:?})")).unwrap_or_else(|| "None".to_owned());
        let _ = writeln!(
            out,
            "    Prefix {{ prefix: {:?}, provider: Provider::{}, default_api_base: {base}, chat_only: {}, model_starts_with: {:?}, api_key_env: &[{}], api_base_env: {:?} }},",
            p.prefix,
            provider_variant(&p.provider, def),
            p.chat_only,
            p.model_starts_with,
            str_list(&p.api_key_env),
            p.api_base_env
        );
    }
    out += "];\n\n/// Model-name families recognised without a prefix: (start of the name, prefix).\npub static FAMILIES: &[(&str, &str)] = &[\n";
    for f in &table.families {
        let _ = writeln!(out, "    ({:?}, {:?}),", f.starts_with, f.prefix);
    }
    out += "];\n";
    out
}

/// Names a JSON pointer by the route it falls in, so errors read `route chat_completions: /request/kind`.
fn describe_location(doc: &Value, pointer: &str) -> String {
    let parts: Vec<&str> = pointer.split('/').skip(1).collect();
    if parts.len() >= 2 && parts[0] == "routes" {
        let op = parts[1]
            .parse::<usize>()
            .ok()
            .and_then(|i| doc["routes"].get(i))
            .and_then(|r| r["op"].as_str())
            .unwrap_or("?");
        let rest = parts[2..].join("/");
        return format!("route {op} (/routes/{}) at /{rest}", parts[1]);
    }
    if pointer.is_empty() {
        "/".to_owned()
    } else {
        pointer.to_owned()
    }
}

fn check_route(file: &str, def: &RouteDef, errors: &mut Vec<String>) {
    let at = |msg: String| format!("{file}: route {}: {msg}", def.op);
    if def.also_bare && bare_path(&def.path).is_none() {
        errors.push(at(format!("also_bare needs a versioned path, {} has none", def.path)));
    }
    if def.request.kind != "none" && def.method != "POST" {
        errors.push(at(format!("{} routes carry no body; request kind must be none", def.method)));
    }
    for (label, schema) in [("request", def.request.schema.as_ref()), ("response", Some(&def.response.schema))] {
        if let Some(schema) = schema {
            if let Err(e) = jsonschema::draft202012::new(schema) {
                errors.push(at(format!("{label} schema does not compile: {e}")));
            }
            if contains_key(schema, "$ref") {
                errors.push(at(format!("{label} schema uses $ref; catalogue schemas must be inline")));
            }
        }
    }
    let params = path_params(&def.path);
    for (provider, route) in def.providers.iter().flatten() {
        for template in [&route.upstream, &route.stream_upstream].into_iter().flatten() {
            for p in path_params(template) {
                if !params.contains(&p) && !DEPLOYMENT_FIELDS.contains(&p.as_str()) {
                    errors.push(at(format!(
                        "provider {provider}: upstream {template:?} names {{{p}}}, which is neither a path parameter nor one of {DEPLOYMENT_FIELDS:?}"
                    )));
                }
            }
        }
        if route.upstream.is_none() && route.translate == "passthrough" {
            errors.push(at(format!("provider {provider}: passthrough needs an upstream")));
        }
    }
}

/// Deployment fields an upstream template may name besides the route's path parameters.
const DEPLOYMENT_FIELDS: &[&str] =
    &["model", "deployment", "api_version", "region", "vertex_project", "vertex_location"];

fn contains_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|v| contains_key(v, key)),
        Value::Array(a) => a.iter().any(|v| contains_key(v, key)),
        _ => false,
    }
}

fn path_params(path: &str) -> Vec<String> {
    path.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(p, _)| p.to_owned())).collect()
}

/// `/v1/chat/completions` -> `/chat/completions`; `None` for paths without a version segment.
fn bare_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v")?;
    let (version, tail) = rest.split_once('/')?;
    (version.chars().all(|c| c.is_ascii_digit()) && !version.is_empty()).then(|| format!("/{tail}"))
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn upstream_tokens(template: &Option<String>) -> String {
    match template {
        None => "None".to_owned(),
        Some(t) => {
            let (method, path) = t.split_once(' ').expect("meta-schema pattern guarantees 'METHOD /path'");
            format!("Some(Upstream {{ method: HttpMethod::{}, path: {path:?} }})", camel(&method.to_lowercase()))
        }
    }
}

fn generate_rust(routes: &[Route], table: &ProviderTable) -> String {
    let mut out = String::from("// @generated by build.rs from endpoints/*.yaml. Do not edit.\n\n");
    let enum_block = |name: &str, doc: &str, names: &BTreeSet<String>| {
        let mut s = format!("ferrolite_codegen::wire_enum! {{\n    /// {doc}\n    pub enum {name} {{\n");
        for n in names {
            let _ = writeln!(s, "        {} = {n:?},", camel(n));
        }
        s + "    }\n}\n\n"
    };
    // Operations keep catalogue order (files sorted, routes as written) so ROUTES[op as usize] holds.
    out += "ferrolite_codegen::wire_enum! {\n    /// Every operation of the endpoint catalogue.\n    pub enum Operation {\n";
    for r in routes {
        let _ = writeln!(out, "        /// {}\n        {} = {:?},", r.def.summary, camel(&r.def.op), r.def.op);
    }
    out += "    }\n}\n\n";
    let translators: BTreeSet<String> =
        routes.iter().flat_map(|r| r.def.providers.iter().flatten().map(|(_, p)| p.translate.clone())).collect();
    out += &enum_block(
        "Translator",
        "Every translator the catalogue names; each must be implemented in `providers`.",
        &translators,
    );
    let locals: BTreeSet<String> = routes.iter().filter_map(|r| r.def.local.clone()).collect();
    out += &enum_block(
        "LocalHandler",
        "Every route served by ferrolite itself; each must be implemented in `http::local`.",
        &locals,
    );

    let _ = writeln!(
        out,
        "/// The catalogue, indexed by `Operation as usize`.\npub static ROUTES: [Route; {}] = [",
        routes.len()
    );
    for r in routes {
        let d = &r.def;
        let serve = match (&d.local, &d.providers) {
            (Some(local), _) => format!("Serve::Local(LocalHandler::{})", camel(local)),
            (None, Some(providers)) => {
                let mut s = String::from("Serve::Providers(&[");
                for (name, p) in providers {
                    let _ = write!(
                        s,
                        "(Provider::{}, ProviderRoute {{ upstream: {}, stream_upstream: {}, translate: Translator::{} }}), ",
                        provider_variant(name, &table.providers[name]),
                        upstream_tokens(&p.upstream),
                        upstream_tokens(&p.stream_upstream),
                        camel(&p.translate)
                    );
                }
                s + "])"
            }
            (None, None) => unreachable!("the meta-schema requires local or providers"),
        };
        let request_schema = d
            .request
            .schema
            .as_ref()
            .map(|s| format!("Some({:?})", s.to_string()))
            .unwrap_or_else(|| "None".to_owned());
        let _ = writeln!(
            out,
            "    Route {{ op: Operation::{op}, family: {family:?}, summary: {summary:?}, method: HttpMethod::{method}, path: {path:?}, bare_path: {bare}, params: &[{params}], request: BodyKind::{req}, model_field: {model_field}, request_schema: {request_schema}, response: ResponseKind::{resp}, content_type: {content_type}, serve: {serve} }},",
            op = camel(&d.op),
            family = r.family,
            summary = d.summary,
            method = camel(&d.method.to_lowercase()),
            path = d.path,
            bare = match (d.also_bare, bare_path(&d.path)) {
                (true, Some(b)) => format!("Some({b:?})"),
                _ => "None".to_owned(),
            },
            params = path_params(&d.path).iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", "),
            req = camel(&d.request.kind),
            model_field = d.request.model_field.as_ref().map(|f| format!("Some({f:?})")).unwrap_or_else(|| "None".to_owned()),
            resp = camel(&d.response.kind.replace('-', "_")),
            content_type = d.response.content_type.as_ref().map(|c| format!("Some({c:?})")).unwrap_or_else(|| "None".to_owned()),
        );
    }
    out += "];\n\n";

    out += "\n/// The operation a method and a parameter-free path below the service prefix name (the\n/// request path's own match; paths with parameters go through axum's router).\npub fn plain_operation(method: &::axum::http::Method, path: &str) -> Option<Operation> {\n    match (path, method.as_str()) {\n";
    for r in routes {
        let d = &r.def;
        if !path_params(&d.path).is_empty() {
            continue;
        }
        let bare = if d.also_bare { bare_path(&d.path) } else { None };
        for path in std::iter::once(d.path.clone()).chain(bare) {
            let _ = writeln!(
                out,
                "        ({path:?}, {:?}) => Some(Operation::{}),",
                d.method.to_uppercase(),
                camel(&d.op)
            );
        }
    }
    out += "        _ => None,\n    }\n}\n";
    out
}

fn generate_http_glue(routes: &[Route]) -> String {
    let mut out = String::from("// @generated by build.rs from endpoints/*.yaml. Do not edit.\n\n");
    for r in routes {
        let d = &r.def;
        let _ = writeln!(
            out,
            "ferrolite_codegen::route_handler! {{ name = handle_{}; op = {}; params = [{}] }}",
            d.op,
            camel(&d.op),
            path_params(&d.path).join(", ")
        );
    }
    out += "\n/// The axum method router serving one operation.\nfn method_router(op: Operation) -> ::axum::routing::MethodRouter<crate::http::AppState> {\n    match op {\n";
    for r in routes {
        let _ = writeln!(
            out,
            "        Operation::{} => ::axum::routing::{}(handle_{}),",
            camel(&r.def.op),
            r.def.method.to_lowercase(),
            r.def.op
        );
    }
    out += "    }\n}\n";
    out
}

fn generate_openapi(routes: &[Route], families: &BTreeMap<String, String>) -> Value {
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for r in routes {
        let d = &r.def;
        let mut served = vec![(d.path.clone(), d.op.clone())];
        if let (true, Some(bare)) = (d.also_bare, bare_path(&d.path)) {
            served.push((bare, format!("{}_bare", d.op)));
        }
        for (path, operation_id) in served {
            let mut op = json!({
                "operationId": operation_id,
                "summary": d.summary,
                "tags": [r.family],
                "responses": responses(d),
            });
            let params: Vec<Value> = path_params(&path)
                .iter()
                .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            if !params.is_empty() {
                op["parameters"] = Value::Array(params);
            }
            if let Some(schema) = &d.request.schema {
                let media = if d.request.kind == "multipart" { "multipart/form-data" } else { "application/json" };
                op["requestBody"] = json!({"required": true, "content": {media: {"schema": schema}}});
            }
            paths.entry(path).or_default().insert(d.method.to_lowercase(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferrolite",
            "version": std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
            "description": "The OpenAI-compatible surface of one ferrolite LLM service. Paths are relative to the service prefix /{workspace}/apps/{service_id}."
        },
        "servers": [{
            "url": "/{workspace}/apps/{service_id}",
            "variables": {
                "workspace": {"default": "default"},
                "service_id": {"default": "demo"}
            }
        }],
        "tags": families.iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "type"],
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": ["string", "null"]},
                                "code": {"type": ["string", "null"]}
                            }
                        }
                    }
                }
            }
        }
    })
}

fn responses(d: &RouteDef) -> Value {
    let ok = match d.response.kind.as_str() {
        "binary" => {
            json!({"description": "OK", "content": {d.response.content_type.clone().unwrap_or_default(): {"schema": d.response.schema}}})
        }
        "sse-capable" => {
            json!({"description": "OK; a text/event-stream of chunks when the request sets stream: true", "content": {
                "application/json": {"schema": d.response.schema},
                "text/event-stream": {"schema": {"type": "string"}}
            }})
        }
        _ => {
            json!({"description": "OK", "content": {"application/json": {"schema": d.response.schema}}})
        }
    };
    let error = json!({"description": "An OpenAI-style error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({"200": ok, "default": error})
}
