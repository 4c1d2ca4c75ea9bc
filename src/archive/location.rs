//! Where the archive goes, from `archive.url` (or `archive.root`): a local directory, or a
//! prefix in an S3, GCS or Azure object store. Pure: parsing and checks only, no client.
//!
//! Accepted forms:
//! - a plain path, or `file:///abs/path`: the local sink (temp file, fsync, rename, fsync);
//! - `s3://bucket/prefix` (also `s3a://`), `gs://bucket/prefix`,
//!   `az://container/prefix` (also `azure://`, `abfs[s]://container@account.dfs.core.windows.net/prefix`,
//!   and the stores' `https://` URL forms that the `object_store` crate recognises).
//!
//! Refused, with a message: `memory://` (it would lose the archive at exit), plain `http(s)://`
//! servers without a store behind them, and URLs carrying a user, password or query string:
//! credentials come from the environment (the crate's standard chain) or mounted files, never
//! from the URL, which is logged.

use std::fmt;
use std::path::PathBuf;

use object_store::ObjectStoreScheme;
use url::Url;

/// The kind of object store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Amazon S3 or an S3-compatible store (MinIO, Ceph: set `endpoint`).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage / ADLS Gen2.
    Azure,
}

impl StoreKind {
    /// Lower-case name for logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::S3 => "s3",
            StoreKind::Gcs => "gcs",
            StoreKind::Azure => "azure",
        }
    }
}

/// Where archive files are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveLocation {
    /// A local directory (or mounted volume).
    Local(PathBuf),
    /// A prefix in an object store.
    ObjectStore {
        /// Which store.
        kind: StoreKind,
        /// The URL as configured (no credentials: they are refused).
        url: Url,
        /// The key prefix inside the bucket/container, without leading or trailing `/`
        /// (empty: the bucket's root).
        prefix: String,
    },
}

/// An `archive.url` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive.url {url:?}: {problem}")]
pub struct InvalidArchiveUrl {
    /// The value as configured.
    pub url: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ArchiveLocation {
    /// Parses `archive.url`: a URL with a scheme, or a plain path.
    pub fn parse(value: &str) -> Result<ArchiveLocation, InvalidArchiveUrl> {
        let fail = |problem: &str| InvalidArchiveUrl { url: value.to_string(), problem: problem.to_string() };
        if value.trim().is_empty() {
            return Err(fail("must not be empty"));
        }
        if !value.contains("://") {
            return Ok(ArchiveLocation::Local(PathBuf::from(value)));
        }
        // Checked on the raw text: URL parsing would resolve `..` away.
        let after_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
        if after_scheme.split('/').skip(1).any(|part| part == "." || part == "..") {
            return Err(fail("the prefix must not contain `.`, `..` or empty parts"));
        }
        let url = Url::parse(value).map_err(|e| fail(&format!("not a URL: {e}")))?;
        // abfs[s]://container@account.dfs.core.windows.net/ names the container as the user.
        let user_is_container = matches!(url.scheme(), "abfs" | "abfss");
        if (!url.username().is_empty() && !user_is_container) || url.password().is_some() {
            return Err(fail(
                "credentials do not belong in the URL (it is logged): use the environment \
                 (e.g. AWS_ACCESS_KEY_ID, workload identity) or archive.object_store options from a secret",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(fail(
                "a query string or fragment is not supported (a SAS token belongs in the environment)",
            ));
        }
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|()| fail("a file:// URL needs an absolute local path"))?;
            return Ok(ArchiveLocation::Local(path));
        }
        if url.scheme() == "memory" {
            return Err(fail("memory:// would lose the archive when the process exits"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(fail("names no bucket or container"));
        }
        const EXPECTED: &str = "expected s3://, gs://, az://, abfs[s]://, file:// or a plain path";
        let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|_| fail(EXPECTED))?;
        let kind = match scheme {
            ObjectStoreScheme::AmazonS3 => StoreKind::S3,
            ObjectStoreScheme::GoogleCloudStorage => StoreKind::Gcs,
            ObjectStoreScheme::MicrosoftAzure => StoreKind::Azure,
            ObjectStoreScheme::Local => {
                return Ok(ArchiveLocation::Local(url.to_file_path().map_err(|()| fail("not a local path"))?))
            }
            _ => return Err(fail(EXPECTED)),
        };
        let prefix = path.as_ref().trim_matches('/').to_string();
        if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
            return Err(fail("the prefix must not contain `.`, `..` or empty parts"));
        }
        Ok(ArchiveLocation::ObjectStore { kind, url, prefix })
    }

    /// Whether files leave the pod (an object store) rather than a local directory.
    pub fn is_remote(&self) -> bool {
        matches!(self, ArchiveLocation::ObjectStore { .. })
    }

    /// The full object key (or relative path) of archive key `key`.
    pub fn object_key(&self, key: &str) -> String {
        match self {
            ArchiveLocation::ObjectStore { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{key}"),
            _ => key.to_string(),
        }
    }
}

impl fmt::Display for ArchiveLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveLocation::Local(path) => write!(f, "{}", path.display()),
            ArchiveLocation::ObjectStore { url, .. } => write!(f, "{}", url.as_str().trim_end_matches('/')),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(value: &str) -> (StoreKind, String) {
        match ArchiveLocation::parse(value).unwrap() {
            ArchiveLocation::ObjectStore { kind, prefix, .. } => (kind, prefix),
            other => panic!("{value}: {other:?}"),
        }
    }

    #[test]
    fn object_store_urls_name_their_store_and_prefix() {
        assert_eq!(remote("s3://bucket/emogate/archive/"), (StoreKind::S3, "emogate/archive".into()));
        assert_eq!(remote("s3a://bucket"), (StoreKind::S3, String::new()));
        assert_eq!(remote("gs://bucket/a"), (StoreKind::Gcs, "a".into()));
        assert_eq!(remote("az://container/a/b"), (StoreKind::Azure, "a/b".into()));
        assert_eq!(remote("abfss://archive@account.dfs.core.windows.net/x"), (StoreKind::Azure, "x".into()));
        let location = ArchiveLocation::parse("s3://bucket/p/").unwrap();
        assert!(location.is_remote());
        assert_eq!(
            location.object_key("dt=2024-01-02/hour=03/t+0+5.parquet"),
            "p/dt=2024-01-02/hour=03/t+0+5.parquet"
        );
        assert_eq!(location.to_string(), "s3://bucket/p");
        assert_eq!(ArchiveLocation::parse("s3://bucket").unwrap().object_key("k"), "k");
    }

    #[test]
    fn plain_paths_and_file_urls_are_local() {
        assert_eq!(ArchiveLocation::parse("archive").unwrap(), ArchiveLocation::Local("archive".into()));
        assert_eq!(
            ArchiveLocation::parse("file:///var/lib/emogate/archive").unwrap(),
            ArchiveLocation::Local("/var/lib/emogate/archive".into())
        );
        assert!(!ArchiveLocation::parse("/data").unwrap().is_remote());
    }

    #[test]
    fn unusable_urls_say_why() {
        for (value, expect) in [
            ("", "empty"),
            ("s3://key:secret@bucket/p", "credentials"),
            ("s3://AKIA@bucket/p", "credentials"),
            ("az://container/p?sig=abc", "query"),
            ("memory:///", "lose"),
            ("ftp://host/p", "expected"),
            ("s3://bucket/a/../b", "prefix"),
            ("s3:///p", "bucket"),
        ] {
            let err = ArchiveLocation::parse(value).unwrap_err();
            assert!(err.to_string().contains(expect), "{value}: {err}");
        }
    }
}
