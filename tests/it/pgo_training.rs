//! The profile-guided build's training run (`scripts/pgo-serve-train.sh`, which
//! `scripts/build-pgo.sh` runs with its instrumented binary), run here with the debug build: every
//! kind of training request must still get the answer it expects, so the traffic a production
//! binary is optimised for cannot go stale as routes change.

use crate::support::repo_root;
use std::path::Path;
use std::process::Command;

#[test]
fn the_pgo_training_traffic_is_served_and_the_server_stops_cleanly() {
    let ferrolite = Path::new(env!("CARGO_BIN_EXE_ferrolite"));
    // The bench fake is another package's binary, which cargo test builds only as a test
    // harness: scripts/test.sh (the test command) builds it beside ferrolite first.
    let fake = ferrolite.with_file_name("fake-upstream");
    assert!(
        fake.exists(),
        "{} is missing: build it with `cargo build -p ferrolite-bench --bin fake-upstream` (scripts/test.sh does)",
        fake.display()
    );
    let out = Command::new(repo_root().join("scripts/pgo-serve-train.sh"))
        .arg(ferrolite)
        .arg(&fake)
        .env("PGO_TRAIN_SECONDS", "0.3")
        .output()
        .expect("run scripts/pgo-serve-train.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "training failed: {}\n{stdout}\n{stderr}", out.status);
    // Each kind reports how many requests it got answered as expected; none may be zero.
    let kinds: Vec<(&str, u64)> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("pgo-train: "))
        .filter_map(|rest| {
            let (kind, count) = rest.rsplit_once(": ")?;
            Some((kind, count.strip_suffix(" requests")?.parse().ok()?))
        })
        .collect();
    for expected in
        ["chat", "chat over TLS", "chat stream over TLS", "translated stream", "responses stored", "governed"]
    {
        let count = kinds.iter().find(|(kind, _)| *kind == expected).map(|(_, n)| *n);
        assert!(count.is_some_and(|n| n > 0), "{expected}: {count:?} requests answered\n{stdout}");
    }
    assert_eq!(kinds.len(), 15, "every kind ran:\n{stdout}");
    assert!(stderr.contains("trained"), "{stderr}");
}
