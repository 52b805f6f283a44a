//! Smoke run of the benchmark pieces with tiny sizes (the benchmarks
//! themselves are not part of the test command): the generated project deploys
//! and passes its gate, B3's latency variable slows the warehouse a real
//! deploy uses. No timing is asserted here.

mod common;

use std::process::Command;

#[test]
fn generated_project_deploys_green() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("gen");
    let gen = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/gen_project.py"))
        .args(["--models", "30", "--out"])
        .arg(&project)
        .output()
        .expect("python3 runs the generator");
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    let log = dir.path().join("statements.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .current_dir(dir.path())
        .args(["deploy", "--threads", "2", "--format", "json", "--project-dir"])
        .arg(&project)
        .arg("--statement-log")
        .arg(&log)
        .env("BENCH_DB", dir.path().join("bench.duckdb"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["status"], "published");
    assert_eq!(v["counts"]["failed"], 0);
    assert!(v["counts"]["tests"].as_u64().unwrap() >= 30, "{stdout}");
    // every statement is in the log with its timing
    let lines = std::fs::read_to_string(&log).unwrap();
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["micros"].is_u64() && first["start_us"].is_u64() && first["sql"].is_string());
}

/// B3 times `deploy` through `AIRLOCK_BENCH_LATENCY_MS`: the variable must
/// wrap the warehouse deploy really uses, and the deploy must still publish.
#[test]
fn bench_latency_wraps_the_deploy_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("marts");
    let gen = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/gen_project.py"))
        .args(["--models", "6", "--shape", "marts", "--out"])
        .arg(&project)
        .output()
        .expect("python3 runs the generator");
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .current_dir(dir.path())
        .args(["deploy", "--strategy", "wac", "--threads", "4", "--format", "json", "--project-dir"])
        .arg(&project)
        .env("BENCH_DB", dir.path().join("bench.duckdb"))
        .env("AIRLOCK_BENCH_LATENCY_MS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["status"], "published");
    assert!(v["warehouse"].as_str().unwrap().contains("+1 ms per statement"), "{stdout}");
    assert_eq!(v["published"].as_array().unwrap().len(), 6, "{stdout}");
}
