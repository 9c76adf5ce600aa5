//! Replays every committed corpus input through its check, on stable Rust, so
//! that inputs the fuzzer found interesting stay regression tests.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target} failed on {}", path.display());
        inputs += 1;
    }
    assert!(inputs >= 10, "the {target} corpus has only {inputs} inputs");
    println!("{target}: {inputs} corpus inputs replayed");
}

#[test]
fn parse_corpus() {
    replay("parse", sse_fuzz::check_parse);
}

#[test]
fn encode_corpus() {
    replay("encode", sse_fuzz::check_encode);
}

#[test]
fn state_machine_corpus() {
    replay("state_machine", sse_fuzz::check_state_machine);
}
