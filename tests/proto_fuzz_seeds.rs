//! Replays every file of `fuzz/seeds/**` (and of `fuzz/artifacts/**` if present) through
//! the decoder, engine and WebSocket fuzz harnesses, so inputs kept there are regression tests.
#![cfg(feature = "websocket")]

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

#[test]
fn replay_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut all = vec![];
    files(&root.join("seeds"), &mut all);
    files(&root.join("artifacts"), &mut all);
    all.sort();
    assert!(all.len() >= 10, "seed corpus present ({} files)", all.len());
    for f in &all {
        let data = std::fs::read(f).unwrap();
        harness::decoder(&data);
        harness::engine(&data);
        harness::ws(&data);
    }
    println!("replayed {} inputs", all.len());
}
