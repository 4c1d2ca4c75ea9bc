//! [`ObjectStoreSink`]: archive files as objects in S3, GCS or Azure, through the `object_store`
//! crate (the one delta-rs and DataFusion use).
//!
//! # Why whole-object puts keep the local sink's guarantees
//! An object store makes an object visible only when its single PUT, or the completion of its
//! multipart upload, is acknowledged, and then it is durable: readers never see a torn file and
//! need no temporary name or rename (which object stores do not have). A replay after a crash
//! PUTs the same key with the same bytes (keys and encoding are deterministic), which
//! overwrites the object instead of adding a duplicate. Files above
//! [`MULTIPART_THRESHOLD`] go up as a multipart upload in [`PART_SIZE`] parts; an upload that
//! fails half-way is aborted so the store does not keep (and bill) its parts.
//!
//! # Credentials and options
//! Each store's builder starts `from_env()`, the crate's standard chain: `AWS_*` variables, web
//! identity (IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), instance metadata;
//! `GOOGLE_*` and GKE workload identity; `AZURE_*` and Azure workload identity. Then the URL,
//! then `archive.object_store` options (the builder's config keys, e.g. `endpoint`, `region`,
//! `allow_http` for MinIO or Ceph); an unknown key is a configuration error. Option values are
//! never logged.
//!
//! # Timeouts and retries
//! The client's own retries are kept short (a few attempts within seconds) because the
//! archive retries failed files itself, in place and without blocking the consumer for long
//! (`retry.rs`): a put blocks the archive thread, and a long internal retry would delay
//! rebalances and shutdown.
//!
//! # Threading
//! [`ArchiveSink::put`] is synchronous (the archive stage runs on its own OS thread). The sink
//! owns a one-worker Tokio runtime and waits for each request on a channel, so it can be called
//! from any thread, inside another runtime or not.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::location::{ArchiveLocation, StoreKind};
use super::sink::{key_components, ArchiveSink, SinkError};

/// Files at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each part of a multipart upload (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// A failure to set up the object-store client (a configuration problem: the stage does not
/// start).
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreSetupError {
    /// The location is a local directory, not an object store.
    #[error("{0} is not an object-store URL")]
    NotRemote(String),
    /// An `archive.object_store` key that the store's builder does not know.
    #[error("archive.object_store.{key}: not an option of the {store} store ({source})")]
    UnknownOption {
        key: String,
        store: &'static str,
        #[source]
        source: object_store::Error,
    },
    /// The builder refused the settings (missing region or account, bad endpoint, …).
    #[error("archive.url {url}: {source}")]
    Build {
        url: String,
        #[source]
        source: object_store::Error,
    },
    /// The I/O runtime could not start.
    #[error("starting the object-store I/O thread: {0}")]
    Runtime(std::io::Error),
}

/// Archive files as objects under a bucket prefix; see the module docs.
pub struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
    location: ArchiveLocation,
    /// `Option` only so that `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ObjectStoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options may hold secrets: only the location is shown.
        f.debug_struct("ObjectStoreSink").field("location", &self.location.to_string()).finish()
    }
}

impl ObjectStoreSink {
    /// A sink for `location` (an object-store URL) with pass-through `options`.
    pub fn connect(
        location: &ArchiveLocation,
        options: &BTreeMap<String, String>,
    ) -> Result<ObjectStoreSink, ObjectStoreSetupError> {
        let ArchiveLocation::ObjectStore { kind, url, .. } = location else {
            return Err(ObjectStoreSetupError::NotRemote(location.to_string()));
        };
        let store = build_store(*kind, url.as_str(), options)?;
        ObjectStoreSink::with_store(store, location.clone()).map_err(ObjectStoreSetupError::Runtime)
    }

    /// A sink over an already built `store` (tests, or a caller with its own client).
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        location: ArchiveLocation,
    ) -> Result<ObjectStoreSink, std::io::Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("emogate-archive-io")
            .enable_all()
            .build()?;
        Ok(ObjectStoreSink { store, location, runtime: Some(runtime) })
    }

    /// Runs `future` on the sink's runtime and waits for it from this (any) thread.
    fn block_on<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.runtime.as_ref()?.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv().ok()
    }
}

impl Drop for ObjectStoreSink {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl ArchiveSink for ObjectStoreSink {
    fn put(&self, key: &str, data: &[u8]) -> Result<(), SinkError> {
        key_components(key)?;
        let object_key = self.location.object_key(key);
        let location = self.location(key);
        let path = Path::parse(&object_key).map_err(|e| SinkError::ObjectStore {
            op: "put",
            location: location.clone(),
            source: e.into(),
        })?;
        let store = Arc::clone(&self.store);
        let data = Bytes::copy_from_slice(data);
        let result = self.block_on(async move { upload(store.as_ref(), &path, data).await });
        let (op, source) = match result {
            Some(Ok(())) => return Ok(()),
            Some(Err(failure)) => failure,
            None => (
                "put",
                object_store::Error::Generic {
                    store: "archive",
                    source: "the object-store I/O thread stopped".into(),
                },
            ),
        };
        Err(SinkError::ObjectStore { op, location, source })
    }

    fn location(&self, key: &str) -> String {
        format!("{}/{key}", self.location)
    }
}

/// One PUT, or a multipart upload (aborted on failure) for large files.
async fn upload(
    store: &dyn ObjectStore,
    path: &Path,
    data: Bytes,
) -> Result<(), (&'static str, object_store::Error)> {
    if data.len() < MULTIPART_THRESHOLD {
        return store.put(path, PutPayload::from_bytes(data)).await.map(drop).map_err(|e| ("put", e));
    }
    let mut upload = store.put_multipart(path).await.map_err(|e| ("start multipart upload", e))?;
    let mut parts = Vec::new();
    for start in (0..data.len()).step_by(PART_SIZE) {
        let end = (start + PART_SIZE).min(data.len());
        parts.push(upload.put_part(PutPayload::from_bytes(data.slice(start..end))));
    }
    let mut result = Ok(());
    for part in parts {
        if let Err(e) = part.await {
            result = Err(("upload part", e));
            break;
        }
    }
    if result.is_ok() {
        result = upload.complete().await.map(drop).map_err(|e| ("complete multipart upload", e));
    }
    if result.is_err() {
        if let Err(e) = upload.abort().await {
            tracing::warn!(path = %path, error = %e, "aborting a failed multipart upload failed; the store's lifecycle rule for incomplete uploads removes its parts");
        }
    }
    result
}

/// Client settings: short internal retries (the archive retries in place) and bounded requests.
fn client_settings() -> (ClientOptions, RetryConfig) {
    let client = ClientOptions::new()
        .with_timeout(Duration::from_secs(30))
        .with_connect_timeout(Duration::from_secs(5));
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    };
    (client, retry)
}

/// Applies `options` to a builder through its config-key type.
macro_rules! configure {
    ($builder:expr, $key:ty, $store:expr, $options:expr) => {{
        let mut builder = $builder;
        for (name, value) in $options {
            let key: $key = name.to_ascii_lowercase().parse().map_err(|source| {
                ObjectStoreSetupError::UnknownOption { key: name.clone(), store: $store, source }
            })?;
            builder = builder.with_config(key, value.clone());
        }
        builder
    }};
}

/// Builds the client for `url` from the environment, the URL and `options`.
fn build_store(
    kind: StoreKind,
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, ObjectStoreSetupError> {
    let (client, retry) = client_settings();
    let build = |source| ObjectStoreSetupError::Build { url: url.to_string(), source };
    let store = kind.as_str();
    Ok(match kind {
        StoreKind::S3 => {
            let builder =
                AmazonS3Builder::from_env().with_url(url).with_client_options(client).with_retry(retry);
            Arc::new(configure!(builder, AmazonS3ConfigKey, store, options).build().map_err(build)?)
        }
        StoreKind::Gcs => {
            let builder = GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_client_options(client)
                .with_retry(retry);
            Arc::new(configure!(builder, GoogleConfigKey, store, options).build().map_err(build)?)
        }
        StoreKind::Azure => {
            let builder =
                MicrosoftAzureBuilder::from_env().with_url(url).with_client_options(client).with_retry(retry);
            Arc::new(configure!(builder, AzureConfigKey, store, options).build().map_err(build)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn sink() -> (ObjectStoreSink, Arc<InMemory>) {
        let memory = Arc::new(InMemory::new());
        let location = ArchiveLocation::parse("s3://bucket/pre/fix").unwrap();
        (ObjectStoreSink::with_store(memory.clone(), location).unwrap(), memory)
    }

    fn stored(memory: &InMemory, key: &str) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            memory.get(&Path::parse(key).unwrap()).await.unwrap().bytes().await.unwrap().to_vec()
        })
    }

    #[test]
    fn puts_land_under_the_prefix_and_replace_on_replay() {
        let (sink, memory) = sink();
        sink.put("dt=2024-01-02/hour=03/emotion.accepted+0+5.parquet", b"first").unwrap();
        sink.put("dt=2024-01-02/hour=03/emotion.accepted+0+5.parquet", b"again").unwrap();
        assert_eq!(stored(&memory, "pre/fix/dt=2024-01-02/hour=03/emotion.accepted+0+5.parquet"), b"again");
        assert_eq!(
            sink.location("dt=2024-01-02/hour=03/t+0+5.parquet"),
            "s3://bucket/pre/fix/dt=2024-01-02/hour=03/t+0+5.parquet"
        );
    }

    #[test]
    fn large_files_go_up_in_parts_and_arrive_whole() {
        let (sink, memory) = sink();
        let data: Vec<u8> = (0..MULTIPART_THRESHOLD + PART_SIZE / 2).map(|i| (i % 251) as u8).collect();
        sink.put("a/big.parquet", &data).unwrap();
        assert_eq!(stored(&memory, "pre/fix/a/big.parquet"), data);
    }

    #[test]
    fn bad_keys_are_refused_before_any_request() {
        let (sink, _) = sink();
        let err = sink.put("../escape.parquet", b"x").unwrap_err();
        assert!(matches!(err, SinkError::InvalidKey(_)) && err.is_permanent(), "{err}");
    }

    #[test]
    fn usable_from_inside_another_runtime() {
        let (sink, memory) = sink();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { sink.put("k/x.parquet", b"inside").unwrap() });
        assert_eq!(stored(&memory, "pre/fix/k/x.parquet"), b"inside");
    }

    #[test]
    fn unknown_options_and_local_locations_are_setup_errors() {
        let location = ArchiveLocation::parse("s3://bucket/p").unwrap();
        let options = BTreeMap::from([("endpoint_typo".to_string(), "http://127.0.0.1:1".to_string())]);
        let err = ObjectStoreSink::connect(&location, &options).unwrap_err();
        assert!(err.to_string().contains("archive.object_store.endpoint_typo"), "{err}");
        let err = ObjectStoreSink::connect(&ArchiveLocation::parse("/tmp/a").unwrap(), &BTreeMap::new())
            .unwrap_err();
        assert!(matches!(err, ObjectStoreSetupError::NotRemote(_)), "{err}");
        let options = BTreeMap::from([
            ("endpoint".to_string(), "http://127.0.0.1:1".to_string()),
            ("region".to_string(), "us-east-1".to_string()),
            ("allow_http".to_string(), "true".to_string()),
        ]);
        ObjectStoreSink::connect(&location, &options).expect("S3-compatible settings build a client");
    }

    #[test]
    fn permanent_and_transient_store_errors() {
        let e = |source: object_store::Error| SinkError::ObjectStore {
            op: "put",
            location: "s3://b/k".into(),
            source,
        };
        let not_found = e(object_store::Error::NotFound { path: "k".into(), source: "NoSuchBucket".into() });
        assert!(not_found.is_permanent());
        assert_eq!(not_found.reason(), "not_found");
        let denied =
            e(object_store::Error::PermissionDenied { path: "k".into(), source: "AccessDenied".into() });
        assert!(denied.is_permanent());
        let refused = e(object_store::Error::Generic { store: "S3", source: "connection refused".into() });
        assert!(!refused.is_permanent());
        assert_eq!(refused.reason(), "unavailable");
        let full = SinkError::Io {
            op: "write",
            path: "/a".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        assert!(!full.is_permanent());
        assert_eq!(full.reason(), "disk_full");
    }
}
