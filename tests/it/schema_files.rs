//! The checked-in schemas in schema/ match what the code generates.
//! Run with FERROLITE_UPDATE_SCHEMAS=1 to rewrite them after a change.

use crate::support::repo_root;

fn check_fresh(relative: &str, generated: &str) {
    let path = repo_root().join(relative);
    if std::env::var_os("FERROLITE_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{relative} is stale: run `FERROLITE_UPDATE_SCHEMAS=1 cargo test --test it schema_files` and commit the result"
    );
}

#[test]
fn manifest_schema_file_is_fresh() {
    check_fresh("schema/manifest.schema.json", &ferrolite::manifest::json_schema_text());
}

#[test]
fn openapi_file_is_fresh() {
    check_fresh("schema/openapi.json", ferrolite::catalogue::OPENAPI_JSON);
}

#[test]
fn manifest_schema_describes_the_seed_manifest() {
    let schema = ferrolite::manifest::json_schema();
    let params = &schema["$defs"]["LitellmParams"]["properties"];
    for key in [
        "model",
        "api_key",
        "api_base",
        "api_version",
        "mock_response",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_region_name",
        "rpm",
        "tpm",
        "timeout",
        "max_retries",
        "input_cost_per_token",
        "output_cost_per_token",
    ] {
        assert!(params[key].is_object(), "litellm_params.{key} is described");
    }
    let settings = &schema["$defs"]["LitellmSettings"]["properties"];
    for key in [
        "debug",
        "detailed_debug",
        "user_debug",
        "drop_params",
        "routing_strategy",
        "num_retries",
        "timeout",
        "max_budget",
        "fallbacks",
    ] {
        assert!(settings[key].is_object(), "litellm_settings.{key} is described");
    }
    assert_eq!(schema["properties"]["type"]["$ref"], "#/$defs/AppType");
}
