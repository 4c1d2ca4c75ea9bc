//! `emogate featurize`: audio files → openSMILE ComParE_2016 functionals → a corpus in the
//! layout `emogate train` reads. Parallel over files, resumable (files already done are
//! skipped), every bad file reported with its reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use emogate::featurize::corpus_out::{write_corpus, Annotations};
use emogate::featurize::discover::Discovered;
use emogate::featurize::journal::{Journal, JournalMeta};
use emogate::featurize::{self, Extractor, FileOutcome};
use emogate::human;

/// `emogate featurize`
#[derive(clap::Args)]
pub struct FeaturizeArgs {
    /// Audio files or folders (searched recursively for .wav, .flac, .mp3); repeatable.
    #[arg(long, required = true, num_args = 1..)]
    audio: Vec<PathBuf>,
    /// Corpus folder to write (features.npy, features_index.csv, partitions.csv, …).
    #[arg(long)]
    out: PathBuf,
    /// Votes per annotator (`utterance_id,annotator_id,valence,arousal,dominance`), copied in.
    #[arg(long, requires = "partitions")]
    labels: Option<PathBuf>,
    /// Splits (`utterance_id,split,speaker_id`); without it every utterance is `unlabeled`.
    #[arg(long, requires = "labels")]
    partitions: Option<PathBuf>,
    /// Likert points of the votes, recorded in corpus.json.
    #[arg(long, default_value_t = 7)]
    likert_points: u8,
    /// Worker threads (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Folder holding libSMILEapi.so and config/ (default: EMOGATE_OPENSMILE_DIR, then .cache/opensmile/).
    #[arg(long)]
    opensmile: Option<PathBuf>,
    /// Exit non-zero when any file fails (default: report the failures, exit 0 if any file succeeded).
    #[arg(long)]
    strict: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: FeaturizeArgs) -> Result<()> {
    super::init_tracing("warn")?;
    let started = Instant::now();
    let installation = featurize::locate(args.opensmile.as_deref())?;
    let extractor = Extractor::open(&installation).context("cannot start openSMILE")?;
    let Discovered { files, ignored } = featurize::discover(&args.audio)?;
    if files.is_empty() {
        bail!("no audio files (.wav, .flac, .mp3) under {:?}", args.audio);
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let meta = JournalMeta {
        feature_set: featurize::FEATURE_SET.into(),
        dims: extractor.feature_names().len(),
        sample_rate: featurize::SAMPLE_RATE,
        feature_names_sha256: hex::encode(Sha256::digest(extractor.feature_names().join("\n"))),
    };
    let mut journal = Journal::open(&args.out, &meta)?;
    let todo: Vec<_> = files.iter().filter(|f| !journal.is_done(&f.utterance_id)).cloned().collect();
    let earlier = files.len() - todo.len();
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let bar = progress_bar(todo.len() as u64, args.json);
    let mut failures: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let (mut done, mut audio_seconds) = (0usize, 0.0f64);
    featurize::featurize_files(&extractor, &todo, jobs, |outcome| -> Result<()> {
        match outcome {
            FileOutcome::Done { file, features, seconds } => {
                journal.append(&file.utterance_id, &features, seconds)?;
                done += 1;
                audio_seconds += seconds;
            }
            FileOutcome::Failed { error, .. } => {
                bar.suspend(|| eprintln!("skipped {error}"));
                failures.entry(error.problem.reason()).or_default().push(error.to_string());
            }
        }
        bar.inc(1);
        Ok(())
    })?;
    journal.sync()?;
    bar.finish_and_clear();
    let extract_seconds = started.elapsed().as_secs_f64();

    let provenance = serde_json::json!({
        "made_by": format!("emogate featurize {}", env!("CARGO_PKG_VERSION")),
        "opensmile": featurize::OPENSMILE_VERSION,
        "opensmile_library": installation.library.display().to_string(),
        "config": featurize::library::COMPARE_CONFIG,
        "feature_level": "func",
        "sample_rate": featurize::SAMPLE_RATE,
        "feature_names_sha256": meta.feature_names_sha256,
    });
    let annotations = Annotations {
        labels: args.labels.as_deref(),
        partitions: args.partitions.as_deref(),
        likert_points: args.likert_points,
    };
    let written = write_corpus(&args.out, &journal, extractor.feature_names(), annotations, provenance)?;
    let failed: usize = failures.values().map(Vec::len).sum();
    let report = serde_json::json!({
        "out": args.out.display().to_string(),
        "files": files.len(),
        "featurized_now": done,
        "featurized_earlier": earlier,
        "failed": failed,
        "failed_by_reason": failures,
        "ignored_not_audio": ignored.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "utterances": written.utterances,
        "partitions_without_features": written.partitions_without_features,
        "jobs": jobs,
        "seconds": extract_seconds,
        "audio_seconds": audio_seconds,
        "files_per_sec": done as f64 / extract_seconds.max(1e-9),
        "real_time_factor": if audio_seconds > 0.0 { extract_seconds / audio_seconds } else { 0.0 },
    });
    let text = serde_json::to_string_pretty(&report)? + "\n";
    std::fs::write(args.out.join("featurize_report.json"), &text)
        .context("cannot write featurize_report.json")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report, &written.partitions_without_features);
    }
    if written.utterances == 0 {
        bail!("no file gave a feature vector; see the reasons above");
    }
    if args.strict && failed > 0 {
        bail!("{failed} file(s) failed (--strict)");
    }
    Ok(())
}

fn progress_bar(len: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("featurize {bar:30} {pos}/{len} files, {per_sec}, ETA {eta}")
            .expect("valid template"),
    );
    bar
}

fn print_summary(report: &serde_json::Value, missing: &[String]) {
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    let f = |k: &str| report[k].as_f64().unwrap_or(0.0);
    println!(
        "featurized {} of {} files ({} earlier, {} failed) into {} in {} ({} files/s, real-time factor {:.3})",
        human::count(n("featurized_now")),
        human::count(n("files")),
        human::count(n("featurized_earlier")),
        human::count(n("failed")),
        report["out"].as_str().unwrap_or(""),
        human::duration(f("seconds")),
        human::whole(f("files_per_sec")),
        f("real_time_factor"),
    );
    if let Some(reasons) = report["failed_by_reason"].as_object() {
        for (reason, files) in reasons {
            println!("  failed ({reason}): {}", files.as_array().map_or(0, Vec::len));
        }
    }
    let ignored = report["ignored_not_audio"].as_array().map_or(0, Vec::len);
    if ignored > 0 {
        println!("  ignored {ignored} file(s) without an audio extension (listed in featurize_report.json)");
    }
    if !missing.is_empty() {
        println!(
            "  {} utterance(s) of --partitions have no features and were left out of partitions.csv (first: {})",
            missing.len(),
            missing[0]
        );
    }
}
