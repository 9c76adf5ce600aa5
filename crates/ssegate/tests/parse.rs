//! End-to-end tests of `ssegate parse` as a user runs it: a file, a live
//! pipe, limits and bad arguments.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

fn ssegate_parse() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssegate"));
    command.arg("parse");
    command
}

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sse-parser/testdata/market.sse")
}

/// Runs `ssegate parse args` with `input` on standard input, to its end.
fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = ssegate_parse()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssegate parse starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input)
        .expect("ssegate parse reads its input");
    drop(stdin);
    child.wait_with_output().expect("ssegate parse ends")
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[test]
fn dumps_the_sample_stream() {
    let output = ssegate_parse().arg(sample()).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let items = json_lines(&output);

    assert_eq!(
        items[0],
        json!({"kind": "comment", "text": " ssegate sample market feed"})
    );
    assert_eq!(items[1], json!({"kind": "retry", "ms": 2000}));
    assert_eq!(
        items[2],
        json!({"kind": "event", "type": "quote", "id": "100001",
               "data": r#"{"s":"AAPL","b":189.12,"a":189.14,"t":1700000000373}"#})
    );
    let events: Vec<&Value> = items.iter().filter(|i| i["kind"] == "event").collect();
    assert_eq!(events.len(), 22);
    // GOOG's lines end in CRLF; they parse the same.
    assert_eq!(events[2]["id"], "100003");
    let book = events[20];
    assert_eq!(book["type"], "book");
    assert!(book["data"].as_str().unwrap().contains("]],\n \"asks\""));
    // The last event has no id line: it carries the last one.
    assert_eq!(
        events[21],
        &json!({"kind": "event", "type": "status", "data": "market closed", "id": "100021"})
    );
    assert_eq!(items.iter().filter(|i| i["kind"] == "comment").count(), 5);
}

#[test]
fn chunk_size_does_not_change_the_output() {
    let whole = ssegate_parse().arg(sample()).output().unwrap();
    for size in ["1", "2", "7", "100"] {
        let chunked = ssegate_parse()
            .args(["--chunk-size", size])
            .arg(sample())
            .output()
            .unwrap();
        assert!(chunked.status.success());
        assert_eq!(chunked.stdout, whole.stdout, "--chunk-size {size}");
    }
}

#[test]
fn a_live_stream_shows_each_event_as_it_arrives() {
    let mut child = ssegate_parse()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // The stream stays open: each event must be printed before the next is sent.
    for i in 0..3 {
        writeln!(stdin, "id: {i}\ndata: tick {i}\n").unwrap();
        stdin.flush().unwrap();
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("event printed while the stream is open");
        let item: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            item,
            json!({"kind": "event", "type": "message", "data": format!("tick {i}"), "id": i.to_string()})
        );
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

#[test]
fn a_limit_error_is_reported_as_json_with_exit_status_one() {
    let output = with_stdin(
        &["--max-line-len", "8"],
        b"data: ok\n\ndata: far too long\n\n",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        json_lines(&output),
        [
            json!({"kind": "event", "type": "message", "data": "ok", "id": ""}),
            json!({"kind": "error", "message": "SSE line longer than the limit of 8 bytes"}),
        ]
    );
}

#[test]
fn bad_arguments_and_missing_files_are_clear_errors() {
    let output = ssegate_parse()
        .args(["--chunk-size", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--chunk-size"));

    let output = ssegate_parse()
        .arg("/nonexistent/stream.sse")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open /nonexistent/stream.sse"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_truncated_stream_is_noted_on_stderr() {
    let output = with_stdin(&[], b"data: done\n\ndata: cut off");
    assert!(output.status.success());
    assert_eq!(json_lines(&output).len(), 1);
    assert!(String::from_utf8_lossy(&output.stderr).contains("ended in the middle of an event"));
}
