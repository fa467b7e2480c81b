//! `eventkv serve`: a real process on a loopback port, over a SQLite file.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The running command and its base URL; killed when dropped.
struct Serving {
    child: Child,
    base: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventkv"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run eventkv serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
        .to_owned();
    Serving { child, base }
}

fn push_body() -> Value {
    json!({"protocol": 1, "appends": [{
        "aggregate_type": "Ledger", "aggregate_id": "l", "expected_version": 0,
        "events": [{"event_id": eventkv::Uuid::new_v4(), "event_type": "Added", "payload": {"n": 1}}]
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_pushes_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite:{}", dir.path().join("served.sqlite").display());
    let mut serving = start(&[&store, "--listen", "127.0.0.1:0"]);
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/push", serving.base))
        .json(&push_body())
        .send()
        .await
        .expect("push");
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["results"][0]["status"], "applied", "{body}");

    // A long poll is waiting when SIGTERM comes: it is answered, then the process exits.
    let waiting = tokio::spawn({
        let url = format!("{}/pull?protocol=1&after=1&wait_ms=20000", serving.base);
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    assert_eq!(terminate(serving.child.id()), 0, "SIGTERM sent");
    assert_eq!(waiting.await.expect("pull").expect("answered"), 200);
    let status = serving.child.wait().expect("exits");
    assert!(status.success(), "a graceful exit: {status:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "the long poll did not hold it up"
    );

    // The event is in the file.
    let out = common::eventkv(&["export", &store], None);
    assert!(out.status.success(), "{}", common::described(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// Sends SIGTERM to the child `pid` with the `kill` command (the crate forbids unsafe
/// code).
fn terminate(pid: u32) -> i32 {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_tokens_refuses_strangers_and_without_them_stays_on_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite:{}", dir.path().join("auth.sqlite").display());
    refused_as_usage(&["serve", &store, "--listen", "0.0.0.0:0"], "--auth");

    let tokens = dir.path().join("tokens.json");
    std::fs::write(
        &tokens,
        r#"{"principals": [{"name": "app", "tokens": ["app-token-0123456789"], "read": ["Ledger"], "write": ["Ledger"]}]}"#,
    )
    .expect("write tokens");
    // (Tests listen on loopback only; the refusal above is made before binding.)
    let serving = start(&[
        &store,
        "--listen",
        "127.0.0.1:0",
        "--auth",
        &tokens.display().to_string(),
    ]);
    let base = serving.base.clone();
    let http = reqwest::Client::new();
    let anonymous = http.get(format!("{base}/info")).send().await.expect("info");
    assert_eq!(anonymous.status().as_u16(), 401);
    let info: Value = http
        .get(format!("{base}/info"))
        .bearer_auth("app-token-0123456789")
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["principal"], "app", "{info}");
    assert_eq!(info["protocols"], json!([1]), "{info}");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"principals": [{"name": "x", "tokens": ["short"]}]}"#,
    )
    .expect("write");
    refused_as_usage(
        &["serve", &store, "--auth", &bad.display().to_string()],
        "at least 16",
    );
}

/// Runs the command with `args`: it must exit 2 (bad usage), saying `why` on stderr.
fn refused_as_usage(args: &[&str], why: &str) {
    let refused = common::eventkv(args, None);
    let described = common::described(&refused);
    assert_eq!(refused.status.code(), Some(2), "{described}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(why),
        "{described}"
    );
}
