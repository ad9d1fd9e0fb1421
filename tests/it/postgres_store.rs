//! PostgreSQL as the system of record (`--database-url`), against a real Debian `postgres`:
//! what the controller keeps outlives an instance and its data dir; instances sharing it keep
//! each its own spend and count the others', with Redis and without; two instances sharing
//! Redis and PostgreSQL hold a budget together and serve everything again after Redis comes back
//! empty, the spend of an instance that is gone included; the spend log and stored responses
//! live in the database; migrations apply once; a large spend flush is one statement.

use crate::support::{read_json, Postgres, Redis, ServeProcess, TestServer};
use ferrolite::observability::spend_log::{SpendOutcome, SpendRecord};
use ferrolite::store::postgres::{applied_migrations, migrate, MIGRATIONS};
use ferrolite::store::spend_logs::{PgSpendLogs, SpendLogStore, SpendQuery};
use ferrolite::store::ResponseDb;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
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
    chat_at(&server.base, credential, model).await
}

async fn chat_at(base: &str, credential: &str, model: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/team/apps/paid/v1/chat/completions"))
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

    // The database restarts under B: its connections are made again.
    pg.restart();
    b.ok("team", &token, "set_budget", json!({"user": "ada", "max_budget": 4})).await;
    assert_eq!(chat(&b, &key, "m").await.0, 200, "the fourth dollar, under the raised budget");
    b.running.shutdown().await.unwrap();
    let c = instance(&pg, None).await;
    let (status, body) = chat(&c, &key, "m").await;
    assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "A's and B's spend: {body}");
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
        // Until its figures flow again an instance budgets on its own books, the others' spend
        // as last read: a free request shows when it counts the whole budget spent.
        eventually("each instance counts the budget spent", || async {
            chat(server, &budgeted, "free").await.0 == 429
        })
        .await;
        let (status, body) = chat(server, &budgeted, "m").await;
        assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "{body}");
    }
    // An instance started now finds all of it in Redis and PostgreSQL alike.
    let c = instance(&pg, Some(&redis)).await;
    assert_eq!(chat(&c, &free, "free").await.0, 200);
}

/// The API keys' stored spend: instance id -> micro-dollars.
fn stored_key_spend(pg: &Postgres) -> HashMap<String, i64> {
    let rows = pg
        .client()
        .with(|c| c.query("SELECT instance, micros FROM spend WHERE app_id = '' AND scope LIKE 'key%'", &[]))
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn instance_id(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("instance-id")).unwrap().trim().to_owned()
}

/// `ferrolite serve` on `data_dir` over the database (a process, so it can be killed).
fn serve(pg: &Postgres, data_dir: &Path) -> ServeProcess {
    tokio::task::block_in_place(|| ServeProcess::spawn(&["--port", "0", "--database-url", &pg.url], data_dir))
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_sharing_postgres_without_redis_keep_their_own_spend_and_count_the_others() {
    let pg = Postgres::start();
    let a = instance(&pg, None).await;
    let token = a.token_for("team");
    a.ok("team", &token, "install", json!({"manifest": manifest()})).await;
    a.ok("team", &token, "start", json!({"app_id": "paid"})).await;
    let key = a.ok("team", &token, "create_key", json!({"max_budget": 5})).await["key"].as_str().unwrap().to_owned();
    // Without Redis, B learns the app and the key from the database when it starts.
    let b_dir = tempfile::tempdir().unwrap();
    let b = serve(&pg, b_dir.path());
    let (a_id, b_id) = (instance_id(a.data_dir()), instance_id(b_dir.path()));
    for _ in 0..2 {
        assert_eq!(chat(&a, &key, "m").await.0, 200);
    }
    assert_eq!(chat_at(&b.base, &key, "m").await.0, 200);
    let stored = |a_micros: i64, b_micros: i64| HashMap::from([(a_id.clone(), a_micros), (b_id.clone(), b_micros)]);
    eventually("each instance's own spend is stored, apart", || async {
        stored_key_spend(&pg) == stored(2_000_000, 1_000_000)
    })
    .await;

    // B is killed and comes back on its data dir: it goes on from its own figure.
    drop(b);
    let b = serve(&pg, b_dir.path());
    assert_eq!(chat_at(&b.base, &key, "m").await.0, 200, "$4 of $5 spent now");
    assert_eq!(chat(&a, &key, "m").await.0, 200, "the fifth dollar");
    eventually("B's figure went on from its own", || async { stored_key_spend(&pg) == stored(3_000_000, 2_000_000) })
        .await;

    // A free request fits while any budget is left: each instance refuses it once it counts
    // the other's spend beside its own, and neither serves a sixth dollar.
    eventually("A counts B's spend", || async { chat(&a, &key, "free").await.0 == 429 }).await;
    eventually("B counts A's spend", || async { chat_at(&b.base, &key, "free").await.0 == 429 }).await;
    for (status, body) in [chat(&a, &key, "m").await, chat_at(&b.base, &key, "m").await] {
        assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "{body}");
    }
    assert_eq!(stored_key_spend(&pg), stored(3_000_000, 2_000_000));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_redis_gets_back_the_spend_of_an_instance_that_is_gone() {
    let (pg, redis) = (Postgres::start(), Redis::start());
    let port = redis.port;
    let (a, b) = (instance(&pg, Some(&redis)).await, instance(&pg, Some(&redis)).await);
    let token = a.token_for("team");
    a.ok("team", &token, "install", json!({"manifest": manifest()})).await;
    a.ok("team", &token, "start", json!({"app_id": "paid"})).await;
    let key = a.ok("team", &token, "create_key", json!({"max_budget": 3})).await["key"].as_str().unwrap().to_owned();
    eventually("B serves the app with the key", || async { chat(&b, &key, "free").await.0 == 200 }).await;
    for _ in 0..2 {
        assert_eq!(chat(&a, &key, "m").await.0, 200);
    }
    a.running.shutdown().await.unwrap();

    // Redis restarts empty: only the database still has what A spent, and B puts it back.
    drop(redis);
    let redis = Redis::start_on(port);
    eventually("A's spend is back in Redis", || async { key_spend_in_redis(&redis) == 2_000_000 }).await;
    assert_eq!(chat(&b, &key, "m").await.0, 200, "the third dollar");
    eventually("B counts the budget spent", || async { chat(&b, &key, "free").await.0 == 429 }).await;
    let (status, body) = chat(&b, &key, "m").await;
    assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "{body}");
    eventually("B's own spend joins it", || async { key_spend_in_redis(&redis) == 3_000_000 }).await;
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

/// A large group's flush in one statement: 5,000 deployment rows (ids in no key order, one key
/// twice in a period and one moving to the next period within the flush, one all-time budget),
/// read back as the instance restores them; a later flush never takes a figure back.
#[test]
fn a_large_spend_flush_is_one_statement_with_each_key_once() {
    use ferrolite::store::postgres::PgStore;
    use ferrolite::store::SpendRow;
    let pg = Postgres::start();
    migrate(&pg.client(), None).unwrap();
    let store = PgStore::open(&pg.url, "instance-a").unwrap();
    fn row(scope: &str, period: u64, micros: u64) -> SpendRow<'_> {
        SpendRow { workspace: "w", app_id: "big", scope, period, period_secs: Some(86_400), micros }
    }
    let ids: Vec<String> = (0..5_000u64).map(|i| format!("gpt/{}", (i * 7_919) % 5_000)).collect();
    let mut rows: Vec<SpendRow<'_>> = ids.iter().map(|id| row(id, 7, 10)).collect();
    rows.push(row("gpt/3", 7, 25)); // the same period: the higher figure stays
    rows.push(row("gpt/4", 8, 1)); // the next period: it replaces the last
    rows.push(SpendRow { period_secs: None, ..row("app", 0, 99) });
    store.put_spends(&rows).unwrap();
    let stored = store.spend("w", "big").unwrap();
    assert_eq!(stored.len(), 5_001, "each key once");
    assert_eq!((stored["gpt/0"], stored["gpt/3"], stored["gpt/4"], stored["app"]), ((7, 10), (7, 25), (8, 1), (0, 99)));
    // A flush with a lower figure in the same period leaves the higher one.
    store.put_spends(&[row("gpt/3", 7, 12)]).unwrap();
    assert_eq!(store.spend("w", "big").unwrap()["gpt/3"], (7, 25));
}
