//! `emogate evaluate --quick` on small synthetic corpora (the default model's world, seed 7):
//! the report's structure and its internal consistency, read back from the files it wrote.
#![cfg(feature = "train")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{emogate, s};

use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

const ATTRIBUTES: [&str; 3] = ["valence", "arousal", "dominance"];
const METHODS: [&str; 8] =
    ["vae_er", "no_soft_labels", "one_mc_sample", "no_vae", "ae_mcd", "mcd", "mcd_soft", "mcd_mtl"];

/// Small main and cross corpora of the default model's world (seed 7) under `dir`, and the
/// committed model: (main, cross, model).
fn small_corpora(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (main, cross) = (dir.join("main"), dir.join("cross"));
    emogate(&["synth", "--out", s(&main), "--sizes", "train=96,dev=40,test=100,unlabeled=48", "--seed", "7"]);
    emogate(&[
        "synth",
        "--out",
        s(&cross),
        "--variant",
        "iemocap",
        "--sizes",
        "train=80,dev=30,test=30",
        "--seed",
        "7",
    ]);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    (main, cross, model)
}

#[test]
fn evaluate_quick_writes_a_consistent_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (main, cross, model) = small_corpora(tmp.path());
    let out = tmp.path().join("out");
    let printed = emogate(&[
        "evaluate",
        "--model",
        s(&model),
        "--corpus",
        s(&main),
        "--cross-corpus",
        s(&cross),
        "--out",
        s(&out),
        "--quick",
        "--mc-samples",
        "8",
    ]);
    assert!(printed.contains("within_corpus: mean CCC at 60% coverage over 2 trial(s)"), "{printed}");

    let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["settings"]["trials"], 2);
    assert_eq!(r["settings"]["seeds"], serde_json::json!([1, 2]));
    assert_eq!(r["corpus"]["id"], "synthetic-msp-v1-seed7");
    assert_eq!(r["model"]["id"], "emogate-vae-er");
    let records = r["corpus"]["records"].as_u64().unwrap() as usize;
    assert_eq!(records, 100);

    // Figs. 2 and 3 (DESIGN §7 names these fields).
    for a in ATTRIBUTES {
        let an = &r["attributes"][a];
        let curve = an["coverage_curve"].as_array().unwrap();
        assert_eq!(curve.len(), 17, "{a}: 100 % to 20 % in 5 % steps");
        assert_eq!(f(&curve[0]["coverage"]), 1.0);
        assert!((f(&curve[16]["coverage"]) - 0.2).abs() < 1e-12);
        assert_eq!(f(&curve[0]["ccc"]), f(&an["ccc_full"]), "{a}: the curve at 100 % is the overall CCC");
        assert!(curve.windows(2).all(|w| f(&w[0]["coverage"]) > f(&w[1]["coverage"])));
        assert!(curve.iter().all(|p| (-1.0..=1.0).contains(&f(&p["ccc"]))));
        let sizes: Vec<u64> =
            an["quintile_sizes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(sizes, [20; 5], "{a}: equal quintiles");
        assert_eq!(an["quintile_ccc"].as_array().unwrap().len(), 5);
        let gain = f(&an["relative_gain_at_60"]);
        let at60 = curve.iter().find(|p| (f(&p["coverage"]) - 0.6).abs() < 1e-9).unwrap();
        assert!((gain - (f(&at60["ccc"]) / f(&an["ccc_full"]) - 1.0)).abs() < 1e-9);
        // On the model's own world the VAE-ER entropy carries information: the model was
        // trained on this generator (seed 7), so its CCC is well above zero.
        assert!(f(&an["ccc_full"]) > 0.2, "{a}: {}", an["ccc_full"]);
        // The headline ranks by the score the manifest serves; the paper's entropy curve is kept
        // beside it in the same format, and both start at the same overall CCC.
        assert_eq!(an["score"], "uncertainty", "models/default serves the uncertainty");
        let entropy = an["entropy_curve"].as_array().unwrap();
        assert_eq!(entropy.len(), curve.len());
        assert_eq!(entropy[0], curve[0]);
        assert_ne!(entropy, curve, "{a}: the two rankings differ below 100 %");
        assert_eq!(an["entropy_quintile_ccc"].as_array().unwrap().len(), 5);
    }

    // Fig. 4: nine pairs; the self pairs are the Fig. 3 entropy curves.
    let utl = r["utl"].as_array().unwrap();
    assert_eq!(utl.len(), 9);
    for c in utl.iter().filter(|c| c["decided"] == c["source"]) {
        let a = c["decided"].as_str().unwrap();
        assert_eq!(c["coverage_curve"], r["attributes"][a]["entropy_curve"]);
    }

    // Tables: every method × attribute × coverage, two trials each; at 100 % coverage no record
    // is rejected, so every method scores the same predictions and the same CCC.
    let tables = r["tables"].as_array().unwrap();
    let mut groups: BTreeMap<(String, String, String, i64), Vec<&Value>> = BTreeMap::new();
    for c in tables {
        let trials: Vec<f64> = c["trials"].as_array().unwrap().iter().map(f).collect();
        assert_eq!(trials.len(), 2, "{c}");
        assert!((f(&c["mean"]) - (trials[0] + trials[1]) / 2.0).abs() < 1e-12);
        assert!(METHODS.contains(&c["method"].as_str().unwrap()));
        if c["significant"] == true {
            assert_eq!(c["best"], true, "only the best method can be marked significant");
        }
        let key = (
            c["table"].as_str().unwrap().to_string(),
            c["attribute"].as_str().unwrap().to_string(),
            c["uncertainty_source"].as_str().unwrap().to_string(),
            (f(&c["coverage"]) * 100.0).round() as i64,
        );
        groups.entry(key).or_default().push(c);
    }
    let within = groups.keys().filter(|k| k.0 == "within_corpus").count();
    assert_eq!(within, 3 * 5);
    assert_eq!(groups.keys().filter(|k| k.0 == "cross_corpus").count(), 3 * 5);
    assert_eq!(groups.keys().filter(|k| k.0 == "cross_corpus_utl").count(), 2 * 5);
    for (key, cells) in &groups {
        assert_eq!(cells.len(), METHODS.len(), "{key:?}");
        assert_eq!(cells.iter().filter(|c| c["best"] == true).count(), 1, "{key:?}");
        for c in cells {
            // No p-value for the proposed method itself, nor where the test is undefined: at
            // 100 % coverage every trial of every method has the same CCC (no spread).
            let undefined = c["method"] == "vae_er" || key.3 == 100;
            assert_eq!(c["p_proposed_better"].is_null(), undefined, "{c}");
        }
        if key.3 == 100 {
            let first = f(&cells[0]["mean"]);
            assert!(cells.iter().all(|c| (f(&c["mean"]) - first).abs() < 1e-12), "{key:?}");
        }
    }
    // Within corpus at 100 %: the STL CCC of the Fig. 3 curve.
    for a in ATTRIBUTES {
        let full = &groups[&("within_corpus".into(), a.into(), a.into(), 100)][0];
        assert!((f(&full["mean"]) - f(&r["attributes"][a]["ccc_full"])).abs() < 1e-12);
    }
    // Cross corpus at 100 %: the mean of the folds' STL CCCs.
    let cc = &r["cross_corpus"];
    assert_eq!(cc["folds"].as_array().unwrap().len(), 5);
    for a in ATTRIBUTES {
        let folds: Vec<f64> = cc["folds"].as_array().unwrap().iter().map(|fo| f(&fo["stl_ccc"][a])).collect();
        let mean = folds.iter().sum::<f64>() / 5.0;
        assert!((f(&cc["stl_ccc_full"][a]) - mean).abs() < 1e-12);
        let full = &groups[&("cross_corpus".into(), a.into(), a.into(), 100)][0];
        assert!((f(&full["mean"]) - mean).abs() < 1e-9, "{a}");
    }
    let speakers: Vec<&Value> = cc["folds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|fo| fo["test_speakers"].as_array().unwrap())
        .collect();
    assert_eq!(speakers.len(), 10, "every speaker is tested exactly once");

    // Inference cost: every method measured, the MCD family also with full passes.
    let inference = r["inference"].as_array().unwrap();
    assert_eq!(inference.len(), METHODS.len());
    for m in inference {
        assert!(f(&m["test_seconds"]) > 0.0 && f(&m["records_per_sec"]) > 0.0, "{m}");
        assert!(m["parameters"].as_u64().unwrap() >= m["parameters_at_inference"].as_u64().unwrap());
        let mcd = m["method"].as_str().unwrap().starts_with("mcd");
        assert_eq!(m["test_seconds_full_passes"].is_null(), !mcd, "{m}");
    }

    // CSVs mirror the JSON; PNGs are real images.
    let fig3 = std::fs::read_to_string(out.join("fig3_coverage.csv")).unwrap();
    assert_eq!(fig3.lines().count(), 1 + 3 * 17);
    let first = fig3.lines().nth(1).unwrap();
    let ccc: f64 = first.rsplit(',').next().unwrap().parse().unwrap();
    assert!((ccc - f(&r["attributes"]["valence"]["ccc_full"])).abs() < 1e-6, "{first}");
    for (csv, rows) in [
        ("fig2_quintiles.csv", 15),
        ("fig2_quintiles_by_entropy.csv", 15),
        ("fig3_coverage_by_entropy.csv", 3 * 17),
        ("fig4_utl.csv", 9 * 17),
        ("table_within_corpus.csv", 3 * 5 * 8),
        ("table1_cross_corpus.csv", 3 * 5 * 8),
        ("table2_cross_corpus_utl.csv", 2 * 5 * 8),
        ("inference_time.csv", 8),
    ] {
        let text = std::fs::read_to_string(out.join(csv)).unwrap();
        assert_eq!(text.lines().count(), rows + 1, "{csv}");
    }
    for png in [
        "fig2_quintiles.png",
        "fig3_coverage.png",
        "fig4_utl.png",
        "methods_within_corpus.png",
        "table1_cross_corpus.png",
    ] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        assert!(bytes.len() > 10_000, "{png} has content");
    }
}

#[test]
fn evaluate_refuses_unknown_methods_with_the_list() {
    let out = Command::new(env!("CARGO_BIN_EXE_emogate"))
        .args(["evaluate", "--corpus", "/nonexistent", "--out", "/tmp/unused", "--methods", "vae_er,bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown method `bogus`") && err.contains("mcd_mtl"), "{err}");
}

/// JSON files (stored runs) under a trial directory's `trials/`.
fn stored_runs(dir: &Path) -> usize {
    let Ok(seeds) = std::fs::read_dir(dir.join("trials")) else { return 0 };
    seeds
        .filter_map(Result::ok)
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.filter_map(Result::ok))
        .filter(|f| f.file_name().to_string_lossy().ends_with(".json"))
        .count()
}

#[test]
fn evaluate_killed_after_one_trial_resumes_to_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (main, cross, model) = small_corpora(tmp.path());
    let command = |resume: &Path, out: &Path, mc: &str| -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_emogate"));
        c.args(["evaluate", "--model", s(&model), "--corpus", s(&main), "--cross-corpus", s(&cross)])
            .args(["--out", s(out), "--resume", s(resume), "--quick", "--mc-samples", mc])
            .args(["--methods", "vae_er,mcd", "--trials", "3", "--no-plots"]);
        c
    };
    let run_logged = |resume: &Path, out: &Path| {
        let o = command(resume, out, "8").output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    let run = |resume: &Path, out: &Path| run_logged(resume, out).0;
    let (whole, parts) = (tmp.path().join("whole"), tmp.path().join("parts"));

    // The uninterrupted run.
    let printed = run(&whole, &tmp.path().join("out-whole"));
    assert!(printed.contains("trials complete: 3 of 3 (6 run(s) trained now, 0 read"), "{printed}");
    assert!(printed.contains("VAE-ER vs each method at 60% coverage"), "{printed}");

    // The same evaluation killed (SIGKILL) as soon as trial 1 is stored.
    let out_parts = tmp.path().join("out-parts");
    let mut child = command(&parts, &out_parts, "8")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while stored_runs(&parts) < 2 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(t0.elapsed() < std::time::Duration::from_secs(600), "trial 1 never finished");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let stored = stored_runs(&parts);
    assert!((2..6).contains(&stored), "killed part-way: {stored} of 6 runs stored");
    assert!(!out_parts.join("report.json").exists(), "the killed run wrote no report");

    // Resumed: the stored runs are read, the rest trained, and the report is the same.
    let (printed, log) = run_logged(&parts, &out_parts);
    assert!(
        printed
            .contains(&format!("trials complete: 3 of 3 ({} run(s) trained now, {stored} read", 6 - stored)),
        "{printed}"
    );
    // The progress count includes the stored runs from its first line on.
    assert!(log.contains(&format!("[{stored}/6 runs done, about ")), "{log}");
    let report = |out: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
    };
    let (a, b) = (report(&tmp.path().join("out-whole")), report(&out_parts));
    for key in ["tables", "attributes", "utl", "cross_corpus"] {
        assert_eq!(a[key], b[key], "{key} differs between the uninterrupted and the resumed run");
    }
    assert_eq!(a["settings"]["seeds"], serde_json::json!([1, 2, 3]));
    assert_eq!(a["settings"]["seeds"], b["settings"]["seeds"]);
    assert_eq!(b["settings"]["schedules"].as_array().unwrap().len(), 2, "each method's schedule is stated");

    // Another evaluation (here: other MC samples) is refused in that directory, naming why.
    let o = command(&parts, &out_parts, "4").output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds trials of a different evaluation") && err.contains("mc_samples"), "{err}");

    // A budget of zero minutes starts no run: no report, and the way to continue is printed.
    let printed = command(&tmp.path().join("budget"), &tmp.path().join("out-budget"), "8")
        .args(["--max-minutes", "0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    assert!(text.contains("trials complete: 0 of 3") && text.contains("stopped at --max-minutes"), "{text}");
    assert!(!tmp.path().join("out-budget/report.json").exists());
}
