//! PostgreSQL as the system of record (`--database-url`), against a real Debian `postgres`:
//! what the controller keeps outlives an instance and its data dir; two instances sharing Redis
//! and PostgreSQL hold a budget together and serve everything again after Redis comes back
//! empty; the spend log and stored responses live in the database; migrations apply once.

use crate::support::{read_json, Postgres, Redis, TestServer};
use ferrolite::observability::spend_log::{SpendOutcome, SpendRecord};
use ferrolite::store::postgres::{applied_migrations, migrate, MIGRATIONS};
use ferrolite::store::spend_logs::{PgSpendLogs, SpendLogStore, SpendQuery};
use ferrolite::store::ResponseDb;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// $1 per answer ("four words of answer": 4 tokens at $0.25), and a free model.
fn manifest() -> Value {
    json!({"id": "paid", "name": "paid", "type": "llm-proxy", "config": {"service_id": "paid", "model_list": [
        {"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "four words of answer", "input_cost_per_token": 0.0, "output_cost_per_token": 0.25}},
        {"model_name": "free", "litellm_params": {"model": "gpt-4o", "mock_response": "free"}}
    ]}})
}

async fn instance(pg: &Postgres, redis: Option<&Redis>) -> TestServer {
    let (database, redis) = (pg.url.clone(), redis.map(|r| r.url.clone()));
    TestServer::start(vec![], move |c| {
        c.database_url = Some(database);
        c.redis_url = redis;
    })
    .await
}

async fn chat(server: &TestServer, credential: &str, model: &str) -> (u16, Value) {
    let response = server
        .client
        .post(format!("{}/team/apps/paid/v1/chat/completions", server.base))
        .bearer_auth(credential)
        .header("content-type", "application/json")
        .body(json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]}).to_string())
        .send()
        .await
        .unwrap();
    read_json(response).await
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_keys_budgets_and_spend_logs_outlive_the_instance_and_its_data_dir() {
    let pg = Postgres::start();
    let a = instance(&pg, None).await;
    let token = a.token_for("team");
    a.ok("team", &token, "install", json!({"manifest": manifest()})).await;
    a.ok("team", &token, "start", json!({"app_id": "paid"})).await;
    let key = a.ok("team", &token, "create_key", json!({"user": "ada"})).await["key"].as_str().unwrap().to_owned();
    a.ok("team", &token, "set_budget", json!({"user": "ada", "max_budget": 3})).await;
    assert_eq!(chat(&a, &key, "m").await.0, 200);
    assert!(!a.data_dir().join("ferrolite.db").exists(), "no SQLite beside PostgreSQL");
    a.running.shutdown().await.unwrap();

    // A new instance with an empty data dir: everything comes from PostgreSQL.
    let b = instance(&pg, None).await;
    let token = b.token_for("team");
    let apps = b.ok("team", &token, "list_apps", json!({})).await;
    assert_eq!(apps.as_array().map(Vec::len), Some(1), "{apps}");
    assert_eq!(chat(&b, &key, "m").await.0, 200, "the key and the running app are back");
    assert_eq!(chat(&b, &key, "m").await.0, 200);
    let (status, body) = chat(&b, &key, "m").await;
    assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "ada's $3 are spent: {body}");
    let logs = b.ok("team", &token, "get_spend_logs", json!({"status": "200"})).await;
    assert_eq!(logs["items"].as_array().map(Vec::len), Some(3), "A's record and B's two: {logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_over_redis_and_postgres_hold_a_budget_and_reload_an_emptied_redis() {
    let (pg, redis) = (Postgres::start(), Redis::start());
    let port = redis.port;
    let (a, b) = (instance(&pg, Some(&redis)).await, instance(&pg, Some(&redis)).await);
    let token = a.token_for("team");
    a.ok("team", &token, "install", json!({"manifest": manifest()})).await;
    a.ok("team", &token, "start", json!({"app_id": "paid"})).await;
    let budgeted =
        a.ok("team", &token, "create_key", json!({"max_budget": 20})).await["key"].as_str().unwrap().to_owned();
    let free = a.ok("team", &token, "create_key", json!({})).await["key"].as_str().unwrap().to_owned();
    eventually("B serves the app with the key", || async { chat(&b, &free, "free").await.0 == 200 }).await;

    let calls = (0..100).map(|i| chat(if i % 2 == 0 { &a } else { &b }, &budgeted, "m"));
    let answers = futures::future::join_all(calls).await;
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused = answers.iter().filter(|(status, body)| *status == 429 && body["error"]["type"] == "budget_exceeded");
    assert_eq!((served, refused.count()), (20, 80));

    // Redis restarts empty: the apps, sessions and keys come back from PostgreSQL, the system
    // of record, which holds one app more than either instance (as if a third installed it).
    let mut extra = manifest();
    extra["id"] = json!("extra");
    extra["config"]["service_id"] = json!("extra");
    let extra = extra.to_string();
    pg.client()
        .with(|c| {
            c.execute(
                "INSERT INTO apps (workspace, id, manifest, installed_at, trusted) VALUES ('team', 'extra', $1, 1, true)",
                &[&extra],
            )
        })
        .unwrap();
    drop(redis);
    let redis = Redis::start_on(port);
    eventually("Redis holds the apps again", || async {
        let apps: Vec<String> = redis.query(redis::cmd("KEYS").arg("*"));
        !apps.is_empty()
    })
    .await;
    eventually("the key's spend is floored back", || async { key_spend_in_redis(&redis) == 20_000_000 }).await;
    for server in [&a, &b] {
        eventually("each instance serves the app and the key", || async { chat(server, &free, "free").await.0 == 200 })
            .await;
        eventually("each instance took up the app only PostgreSQL held", || async {
            server.ok("team", &token, "list_apps", json!({})).await.as_array().map(Vec::len) == Some(2)
        })
        .await;
        let (status, body) = chat(server, &budgeted, "m").await;
        assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "{body}");
    }
    // An instance started now finds all of it in Redis and PostgreSQL alike.
    let c = instance(&pg, Some(&redis)).await;
    assert_eq!(chat(&c, &free, "free").await.0, 200);
}

/// Every key's spend in Redis, every instance's summed (micro-dollars).
fn key_spend_in_redis(redis: &Redis) -> u64 {
    let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("ferrolite:budget\u{1f}key*"));
    let mut spent = 0;
    for key in keys {
        let all: std::collections::HashMap<String, u64> = redis.query(redis::cmd("HGETALL").arg(key));
        spent += all.iter().filter(|(field, _)| field.starts_with('@')).map(|(_, v)| v).sum::<u64>();
    }
    spent
}

fn record(at_ms: u64, id: &str) -> SpendRecord {
    SpendRecord {
        at_ms,
        request_id: id.into(),
        key_id: Some("key-1".into()),
        user: Some("ada".into()),
        workspace: "w".into(),
        app_id: "app".into(),
        service_id: "svc".into(),
        model: Some("gpt".into()),
        deployment: Some("gpt/0".into()),
        prompt_tokens: 10,
        completion_tokens: 2,
        cached_tokens: 1,
        cost: 0.25,
        status: 200,
        outcome: SpendOutcome::Ok,
        latency_ms: 1.5,
    }
}

#[test]
fn spend_logs_and_stored_responses_are_written_to_postgres_and_read_back() {
    let pg = Postgres::start();
    migrate(&pg.client(), None).unwrap();

    let logs = PgSpendLogs::open(&pg.url).unwrap();
    let (old, new) = (record(1_000, "r1"), record(2_000, "r2"));
    logs.append(&[old.clone(), new.clone()]).unwrap();
    let mut query = SpendQuery { limit: 1, ..SpendQuery::workspace("w") };
    let first = logs.page(&query).unwrap();
    assert_eq!(first.items, [new]);
    query.cursor = Some(first.next_cursor.unwrap().parse().unwrap());
    let second = logs.page(&query).unwrap();
    assert_eq!((second.items, second.next_cursor), (vec![old], None));
    let by_user = SpendQuery { user: Some("bo".into()), ..SpendQuery::workspace("w") };
    assert!(logs.page(&by_user).unwrap().items.is_empty());
    assert_eq!(logs.purge(1_500).unwrap(), 1);

    let responses = ResponseDb::postgres(&pg.url).unwrap();
    responses.put("w", "resp_1", "{\"a\":1}", 100).unwrap();
    assert_eq!(responses.get("w", "resp_1", 50).unwrap().as_deref(), Some("{\"a\":1}"));
    assert_eq!(responses.get("v", "resp_1", 50).unwrap(), None, "another workspace's");
    assert_eq!(ResponseDb::postgres(&pg.url).unwrap().get("w", "resp_1", 50).unwrap().as_deref(), Some("{\"a\":1}"));
    assert_eq!(responses.get("w", "resp_1", 100).unwrap(), None, "expired");
    assert!(responses.delete("w", "resp_1").unwrap());
    responses.put("w", "resp_2", "{}", 10).unwrap();
    assert_eq!(responses.purge(20).unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_once_and_bring_an_older_database_up_to_date() {
    let pg = Postgres::start();
    let client = pg.client();
    assert_eq!(migrate(&client, Some(1)).unwrap(), [1], "a database at version 1");
    let latest: Vec<i64> = MIGRATIONS.iter().map(|(version, _, _)| *version).collect();

    let first = instance(&pg, None).await;
    assert_eq!(applied_migrations(&client).unwrap(), latest, "the start applied the rest");
    first.running.shutdown().await.unwrap();
    let _second = instance(&pg, None).await;
    assert_eq!(applied_migrations(&client).unwrap(), latest, "a second start applies nothing again");
    assert_eq!(migrate(&client, None).unwrap(), Vec::<i64>::new());
}
