//! The fuzz targets' saved corpus, replayed through the same entry points libFuzzer drives:
//! every input the fuzzers kept, and every crash they once found, still runs without a
//! panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hookgate::fuzzing;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_saved_input_of_every_target_runs_without_a_panic() {
    for target in fuzzing::TARGETS {
        let files = inputs(&corpus(target));
        // Each target's corpus starts from seeds, so an empty folder means it went missing.
        assert!(files.len() >= 3, "{target}: {} inputs", files.len());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            assert!(fuzzing::run(target, &data), "{}", file.display());
        }
    }
}

#[test]
fn every_scheme_has_a_genuine_request_in_the_corpus() {
    let dir = corpus("verify_request");
    for (name, _) in fuzzing::request_seeds() {
        let saved = std::fs::read(dir.join(&name)).unwrap();
        assert!(fuzzing::genuine(&saved), "{name} no longer verifies");
    }
}

/// Writes the starting corpus: one genuine request per scheme, the shipped configuration,
/// and the Pulse fixtures as bodies. `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes into fuzz/corpus"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    for (name, data) in fuzzing::request_seeds() {
        write("verify_request", &name, &data);
    }
    write(
        "load_config",
        "seed-shipped",
        &std::fs::read(root.join("gateway.toml")).unwrap(),
    );
    write(
        "load_config",
        "seed-deploy",
        &std::fs::read(root.join("deploy/gateway.toml")).unwrap(),
    );
    let mut senders = String::from("[server]\nlisten = \"127.0.0.1:8443\"\n");
    senders += "[upstreams.u]\nurl = \"http://127.0.0.1:7001/\"\n";
    for (i, verify) in fuzzing::SCHEMES.iter().enumerate() {
        senders += &format!("[[routes]]\nname = \"s{i}\"\npath = \"/s{i}\"\n");
        senders += &format!("verify = {verify}\nupstreams = [\"u\"]\n");
    }
    write("load_config", "seed-senders", senders.as_bytes());
    for fixture in inputs(&root.join("fixtures/pulse")) {
        if fixture.extension().is_some_and(|e| e == "json") {
            let name = format!("seed-{}", fixture.file_stem().unwrap().to_string_lossy());
            write("examine_body", &name, &std::fs::read(&fixture).unwrap());
        }
    }
}
