//! `emogate demo`: end-to-end run on an in-process mock Kafka cluster with synthetic records.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use emogate::config::DeliveryMode;
use emogate::lifecycle::StageContext;
use emogate::service;
use emogate::testkit::demo::{self, DemoOptions};

/// `emogate demo`
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Synthetic records to send (six bad ones are added, one per dead-letter reason they exercise).
    #[arg(long, default_value_t = 2000)]
    records: usize,
    /// Model directory (default: models/default if present, else models/fixture).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Delivery mode of the infer stage.
    #[arg(long, value_enum, default_value_t = DeliveryMode::ExactlyOnce)]
    delivery: DeliveryMode,
    /// Kafka-protocol brokers (`host:port,...`) instead of the in-process mock cluster; the
    /// run creates and deletes its own uniquely named topics there.
    #[arg(long)]
    brokers: Option<String>,
    /// Archive to this URL instead of demo-output/archive: `s3://bucket/prefix`, `gs://…`,
    /// `az://…`, `file:///path` or a path (`archive.url`). Credentials come from the
    /// environment (AWS_ACCESS_KEY_ID, …), never from the URL.
    #[arg(long, value_name = "URL")]
    archive_url: Option<String>,
    /// An object-store option `KEY=VALUE` (`archive.object_store`), e.g.
    /// `endpoint=http://127.0.0.1:9000`, `region=us-east-1`, `allow_http=true`; repeatable.
    #[arg(long = "archive-option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    archive_options: Vec<(String, String)>,
    /// Print the summary as one JSON object instead of the human one.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    super::init_tracing("warn")?;
    let mut options = DemoOptions {
        records: args.records,
        mode: args.delivery,
        brokers: args.brokers,
        archive_url: args.archive_url,
        archive_options: args.archive_options,
        ..DemoOptions::default()
    };
    if let Some(model) = args.model {
        options.model_dir = model;
    }
    let summary = super::runtime()?
        .block_on(demo::run_demo(
            options,
            Box::new(|ctx: &StageContext| vec![("archive", service::archive_stage(ctx))]),
        ))
        .context("demo failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&summary.to_json())?);
    } else {
        print!("{summary}");
    }
    let expected = summary.options.records + summary.bad_sent;
    let read: usize = summary.read_back.values().sum();
    if read != expected || summary.duplicates > 0 {
        bail!("read back {read} outputs for {expected} inputs ({} duplicates)", summary.duplicates);
    }
    if summary.archive_rows < summary.report.predictions {
        bail!("archive holds {} rows for {} predictions", summary.archive_rows, summary.report.predictions);
    }
    Ok(())
}

/// `KEY=VALUE` → `(KEY, VALUE)`.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}
