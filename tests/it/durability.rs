//! Kill -9 at random points of 200 install / start / stop / uninstall cycles: after each
//! restart the store opens, every acknowledged change is there, and none is half-applied.

use crate::support::{free_port, read_json, ServeProcess};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// What the client knows was acknowledged for one app.
#[derive(Debug, Clone, Default)]
struct Known {
    installed: Option<bool>,
    running: Option<Option<String>>,
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    function: &str,
    kwargs: Value,
) -> Result<(u16, Value), ()> {
    let response = client
        .post(format!("{base}/default/services/server-apps/{function}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(kwargs.to_string())
        .send()
        .await
        .map_err(|_| ())?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|_| ())?;
    Ok((status, serde_json::from_str(&text).map_err(|_| ())?))
}

fn manifest(n: usize) -> Value {
    json!({"name": format!("app{n}"), "type": "llm-proxy", "config": {"service_id": format!("svc{n}"), "model_list": [
        {"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": format!("answer {n}")}}
    ]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_changes_survive_kill_9_at_random_points() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut server = ServeProcess::spawn(&["--port", &port], dir.path());
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap().trim().to_owned();
    let client = reqwest::Client::new();
    let mut known: HashMap<usize, Known> = HashMap::new();
    let mut rng = rand::thread_rng();
    let mut kills = 0;

    for cycle in 0..200 {
        let n = cycle % 4;
        let app_id = format!("app{n}");
        for step in 0..4 {
            let base = server.base.clone();
            let state = known.get(&n).cloned().unwrap_or_default();
            let session = state.running.clone().flatten();
            // After a kill the truth was re-read: skip what no longer applies.
            let skip = match step {
                1 => session.is_some() || state.installed == Some(false),
                2 => session.is_none(),
                3 => state.installed == Some(false),
                _ => false,
            };
            if skip {
                continue;
            }
            let (function, kwargs) = match step {
                0 => ("install", json!({"manifest": manifest(n), "overwrite": true})),
                1 => ("start", json!({"app_id": app_id})),
                2 => ("stop", json!({"session_id": session.clone().unwrap_or_default()})),
                _ => ("uninstall", json!({"app_id": app_id})),
            };
            let kill_now = rng.gen_ratio(1, 40);
            let request = {
                let (client, token) = (client.clone(), token.clone());
                tokio::spawn(async move { call(&client, &base, &token, function, kwargs).await })
            };
            if kill_now {
                tokio::time::sleep(Duration::from_micros(rng.gen_range(0..3000))).await;
                let _ = server.child.kill(); // SIGKILL, mid-request or just after
                let _ = server.child.wait();
            }
            let result = request.await.unwrap();
            let entry = known.entry(n).or_default();
            match (result, function) {
                (Ok((200, _)), "install") => entry.installed = Some(true),
                (Ok((200, body)), "start") => entry.running = Some(body["id"].as_str().map(str::to_owned)),
                (Ok((200, _)), "stop") => entry.running = Some(None),
                (Ok((200, _)), "uninstall") => {
                    entry.installed = Some(false);
                    entry.running = Some(None);
                }
                (Ok((status, body)), _) if !kill_now => panic!("{function} failed unexpectedly: {status} {body}"),
                // No acknowledgement: the change may or may not have happened.
                _ => *entry = Known::default(),
            }
            if kill_now {
                kills += 1;
                server = ServeProcess::spawn(&["--port", &port], dir.path());
                verify(&client, &server.base, &token, &mut known).await;
            }
        }
    }
    assert!(kills >= 5, "enough restarts to mean something: {kills}");
    verify(&client, &server.base, &token, &mut known).await;
}

/// Checks every acknowledged fact, then learns the truth about the unknown ones.
async fn verify(client: &reqwest::Client, base: &str, token: &str, known: &mut HashMap<usize, Known>) {
    let (status, apps) = call(client, base, token, "list_apps", json!({})).await.expect("the store opens");
    assert_eq!(status, 200);
    let (_, running) = call(client, base, token, "list_running", json!({})).await.unwrap();
    let installed: Vec<String> =
        apps.as_array().unwrap().iter().filter_map(|a| a["id"].as_str().map(str::to_owned)).collect();
    let sessions: HashMap<String, String> = running
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["app_id"].as_str().unwrap().to_owned(), s["id"].as_str().unwrap().to_owned()))
        .collect();
    for app in sessions.keys() {
        assert!(installed.contains(app), "session of an app that is not installed: {app} (half-applied uninstall)");
    }
    for (n, k) in known.iter_mut() {
        let app_id = format!("app{n}");
        if let Some(expected) = k.installed {
            assert_eq!(installed.contains(&app_id), expected, "{app_id} installed");
        }
        if let Some(expected) = &k.running {
            assert_eq!(sessions.get(&app_id), expected.as_ref(), "{app_id} running session");
        }
        k.installed = Some(installed.contains(&app_id));
        k.running = Some(sessions.get(&app_id).cloned());
    }
    // Every running session serves, whole (the demo app runs here too; it is not ours).
    for (app, _) in sessions.iter().filter(|(app, _)| app.starts_with("app")) {
        let n: usize = app.trim_start_matches("app").parse().unwrap();
        let response = client
            .post(format!("{base}/default/apps/svc{n}/v1/chat/completions"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}).to_string())
            .send()
            .await
            .unwrap();
        let (status, body) = read_json(response).await;
        assert_eq!(
            (status, body["choices"][0]["message"]["content"].as_str()),
            (200, Some(format!("answer {n}").as_str()))
        );
    }
}
