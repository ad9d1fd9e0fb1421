//! The fuzz targets in CI: every input kept in `fuzz/regressions/<target>/` (crashes found by
//! `scripts/fuzz.sh`, kept so they stay fixed) and the seed corpus, plus a bounded,
//! deterministic mutation pass, all run through `ferrolite::fuzz_targets`. A panic fails.

use crate::support::repo_root;
use ferrolite::fuzz_targets::TARGETS;
use rand::{Rng, SeedableRng};

/// Seed inputs each target starts from: the recorded wire formats and the manifests.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let root = repo_root();
    let read_dir = |dir: &str| -> Vec<Vec<u8>> {
        let mut files: Vec<_> =
            std::fs::read_dir(root.join(dir)).into_iter().flatten().flatten().map(|e| e.path()).collect();
        files.sort();
        files.into_iter().filter(|p| p.is_file()).filter_map(|p| std::fs::read(p).ok()).collect()
    };
    let mut inputs = read_dir(&format!("fuzz/regressions/{target}"));
    inputs.extend(match target {
        "manifest" => read_dir("tests/manifests"),
        "h1_answer" => read_dir("tests/fixtures/http1"),
        "h1_request" => read_dir("tests/fixtures/http1_requests"),
        _ => read_dir("tests/fixtures"),
    });
    inputs.push(Vec::new());
    inputs
}

/// A random edit: flip, insert, delete or duplicate bytes.
fn mutate(rng: &mut rand::rngs::StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..8) {
        let at = if out.is_empty() { 0 } else { rng.gen_range(0..out.len()) };
        match rng.gen_range(0..4) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.gen_range(0..8),
            1 => out.insert(at, rng.gen()),
            2 if !out.is_empty() => {
                out.remove(at);
            }
            _ => {
                let end = (at + rng.gen_range(0..16)).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
        }
    }
    out
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for (name, target) in TARGETS {
        let corpus = seeds(name);
        assert!(corpus.len() > 1, "{name} has seed inputs");
        for input in &corpus {
            target(input);
        }
        for _ in 0..1500 {
            let base = &corpus[rng.gen_range(0..corpus.len())];
            target(&mutate(&mut rng, base));
        }
    }
}
