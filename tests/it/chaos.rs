//! Chaos across instances (issue 23), the suite's short version of `benches/soak.sh --faults`:
//! two `ferrolite serve` processes and a redis-server under steady mixed traffic (JSON and
//! streamed chats, installs and uninstalls through either instance) while Redis is killed and
//! restarted empty, one instance is killed with -9 and restarted, and Redis is frozen.
//!
//! What must hold: no request stuck past its timeout; every request to the instance that never
//! died answered 200 (Redis faults fail no request), and the other's only failed while it was
//! down; no acknowledged install or uninstall lost; spend never counted twice (at most what was
//! answered, at least that minus the last second the killed instance had not stored); both
//! instances serving the same apps within seconds.

use crate::support::{free_port, Redis, ServeProcess};
use ferrolite_bench::cluster_client::{app_ids, chat, controller, Changes};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Far longer than a mock answer takes: a request without an answer by then is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Each price per token of the traffic's model: a request costs its total tokens times this.
const PRICE: f64 = 0.001;

/// One instance: its process (restartable), port and data dir.
struct Instance {
    process: Option<ServeProcess>,
    port: String,
    dir: tempfile::TempDir,
    redis_url: String,
}

impl Instance {
    fn start(redis: &Redis) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let mut instance = Instance { process: None, port: free_port().to_string(), dir, redis_url: redis.url.clone() };
        instance.spawn();
        instance
    }

    fn spawn(&mut self) {
        let args = ["--port", self.port.as_str(), "--redis-url", self.redis_url.as_str()];
        self.process = Some(ServeProcess::spawn(&args, self.dir.path()));
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill_9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.child.kill().unwrap(); // SIGKILL
            p.child.wait().unwrap();
        }
    }
}

/// What one request of the traffic got.
#[derive(Debug)]
struct Outcome {
    instance: usize,
    sent: Instant,
    answered: Instant,
    result: Result<f64, String>,
    timed_out: bool,
}

/// Polls until `check` holds, for at most `secs` seconds.
async fn within<F: std::future::Future<Output = bool>>(secs: u64, what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "not within {secs}s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_hold_under_redis_and_instance_faults() {
    let redis_port = free_port();
    let mut redis = Redis::start_on(redis_port);
    let mut instances = [Instance::start(&redis), Instance::start(&redis)];
    let token = instances[0].process.as_ref().unwrap().token.clone();
    let bases: Vec<String> = instances.iter().map(Instance::base).collect();
    let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();

    let traffic_app = json!({"id": "chaos", "name": "chaos", "type": "llm-proxy", "config": {
        "service_id": "chaos",
        "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "steady",
            "input_cost_per_token": PRICE, "output_cost_per_token": PRICE}}],
        "litellm_settings": {"max_budget": 1000.0}
    }});
    let (status, body) = controller(&client, &bases[0], &token, "install", json!({"manifest": traffic_app})).await;
    assert_eq!(status, 200, "{body}");
    let (status, session) = controller(&client, &bases[0], &token, "start", json!({"app_id": "chaos"})).await;
    assert_eq!(status, 200, "{session}");
    within(5, "both instances serve the app", || async {
        chat(&client, &bases[0], &token, "m", false).await.is_ok()
            && chat(&client, &bases[1], &token, "m", false).await.is_ok()
    })
    .await;

    // Steady traffic: a request every 20 ms, alternating instances, every third one streamed.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let traffic = {
        let (stop, outcomes, client, bases, token) =
            (stop.clone(), outcomes.clone(), client.clone(), bases.clone(), token.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut n = 0usize;
            let mut running = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let (instance, stream) = (n % 2, n % 3 == 0);
                let (client, base, token, outcomes) =
                    (client.clone(), bases[instance].clone(), token.clone(), outcomes.clone());
                running.push(tokio::spawn(async move {
                    let sent = Instant::now();
                    let result = chat(&client, &base, &token, "m", stream).await.map(|tokens| tokens * PRICE);
                    let answered = Instant::now();
                    let timed_out = answered - sent >= REQUEST_TIMEOUT;
                    outcomes.lock().unwrap().push(Outcome { instance, sent, answered, result, timed_out });
                }));
            }
            for r in running {
                r.await.unwrap();
            }
        })
    };
    // Changes: every 300 ms an install through one instance or the other; every third app
    // installed is uninstalled again. Only acknowledged (200) changes are expected to hold.
    let acknowledged = Arc::new(Mutex::new(Changes::default()));
    let changes = {
        let (stop, client, bases, token, acknowledged) =
            (stop.clone(), client.clone(), bases.clone(), token.clone(), acknowledged.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                n += 1;
                Changes::churn_once(&acknowledged, &client, &bases[n % 2], &token, n).await;
            }
        })
    };

    // The faults.
    let pause = |secs: f64| tokio::time::sleep(Duration::from_secs_f64(secs));
    pause(1.5).await;
    drop(redis); // killed
    pause(1.5).await;
    redis = Redis::start_on(redis_port); // back, empty
    pause(2.5).await;
    let killed_at = Instant::now();
    instances[1].kill_9();
    pause(1.0).await;
    instances[1].spawn();
    let back_at = Instant::now();
    pause(2.5).await;
    redis.freeze(true);
    pause(3.0).await;
    redis.freeze(false);
    pause(2.0).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    changes.await.unwrap();

    // No request stuck; the instance that never died answered everything; the other failed only
    // while it was down (requests in flight at the kill included).
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert!(outcomes.len() > 300, "{} requests", outcomes.len());
    let stuck: Vec<&Outcome> = outcomes.iter().filter(|o| o.timed_out).collect();
    assert!(stuck.is_empty(), "requests stuck past their timeout: {stuck:#?}");
    let down = |o: &Outcome| o.instance == 1 && o.answered >= killed_at && o.sent <= back_at;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err() && !down(o)).collect();
    assert!(failed.is_empty(), "failed outside the killed instance's downtime: {failed:#?}");

    // Both instances hold every acknowledged change, and the same apps.
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.wanted.len() >= 5, "changes were acknowledged throughout ({acknowledged:?})");
    for base in &bases {
        within(10, &format!("{base} holds every acknowledged change"), || async {
            app_ids(&client, base, &token).await.is_some_and(|ids| acknowledged.held_by(&ids))
        })
        .await;
    }
    within(10, "both instances hold the same apps", || async {
        app_ids(&client, &bases[0], &token).await == app_ids(&client, &bases[1], &token).await
    })
    .await;

    // Spend: never more than what was answered (plus requests booked but cut by the kill); at
    // least that, minus what the killed instance answered in the second before the kill (its
    // store is written every second).
    let unit = outcomes.iter().find_map(|o| o.result.as_ref().ok().copied()).unwrap();
    let answered: f64 = outcomes.iter().filter_map(|o| o.result.as_ref().ok()).sum();
    let cut = outcomes.iter().filter(|o| o.result.is_err() && down(o)).count() as f64 * unit;
    let unstored: f64 = outcomes
        .iter()
        .filter(|o| o.instance == 1 && o.answered <= killed_at && killed_at - o.answered < Duration::from_millis(1500))
        .filter_map(|o| o.result.as_ref().ok())
        .sum();
    // The probes before the traffic began count too.
    let before_traffic = 2.0 * unit;
    let spend_on = |base: String| {
        let (client, token, session) = (client.clone(), token.clone(), session.clone());
        async move {
            let (status, usage) =
                controller(&client, &base, &token, "get_usage", json!({"session_id": session["id"]})).await;
            assert_eq!(status, 200, "{usage}");
            usage["spend"].as_f64().unwrap()
        }
    };
    within(5, "both instances count the same spend", || async {
        (spend_on(bases[0].clone()).await - spend_on(bases[1].clone()).await).abs() < 1e-6
    })
    .await;
    let spend = spend_on(bases[0].clone()).await;
    let most = answered + before_traffic + cut + 1e-6;
    let least = answered + before_traffic - unstored - 1e-6;
    assert!(spend <= most, "spend {spend} counted more than was answered ({most})");
    assert!(spend >= least, "spend {spend} lost more than the killed instance's last second ({least})");
}
