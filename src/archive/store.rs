//! Archive storage: a local directory or an S3-compatible bucket, through `object_store`.
//!
//! Owns: building the store from an archive route's config (credentials read here, from the
//! environment or files as the config names them), the key prefix, listing finished files,
//! uploading a finished spool file so that it becomes visible only when complete (one PUT for a
//! file up to one part: a local PUT is a staged file renamed into place, an S3 PUT is atomic;
//! larger files as a multipart upload, completed only after every part is in, aborted on
//! failure), and removing the local store's unfinished staging files (`name#N`, which
//! `object_store` never lists) at start. Must not: decide file names or what goes into a file
//! (`topic` does), or touch Kafka.
//!
//! S3 multipart uploads left unfinished by a crash are invisible (never listed, never read);
//! they cost storage until a bucket lifecycle rule (`AbortIncompleteMultipartUpload`) removes
//! them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use thiserror::Error;

use crate::config::{ArchiveConfig, ArchiveStore};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{url}: {why}")]
    Open { url: String, why: String },
    #[error("{url}: {what} {key}: {source}")]
    Object {
        url: String,
        what: &'static str,
        key: String,
        source: Box<object_store::Error>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a route's files go: a store and the key prefix under it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Keys are `{prefix}/{relative}` (just `relative` when empty).
    prefix: String,
    /// The local directory, for removing staging files at start.
    local: Option<PathBuf>,
    part_bytes: u64,
    /// For errors and logs: `file:///dir` or `s3://bucket/prefix`.
    url: String,
}

/// Makes ring the process's rustls provider (reqwest is built without one); a provider
/// installed already is kept.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Store {
    /// The store an archive route names; reads its credentials. `key` names the config key for
    /// errors (`routes[0].archive`).
    pub fn open(key: &str, cfg: &ArchiveConfig) -> Result<Store, StoreError> {
        let part_bytes = cfg.part_bytes.max(1);
        match &cfg.store {
            ArchiveStore::Local { dir } => {
                let url = format!("file://{}", dir.display());
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| StoreError::Open {
                        url: url.clone(),
                        why: e.to_string(),
                    })?
                    .with_fsync(true);
                Ok(Store {
                    inner: Arc::new(fs),
                    prefix: String::new(),
                    local: Some(dir.clone()),
                    part_bytes,
                    url,
                })
            }
            ArchiveStore::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                allow_http,
                credentials,
            } => {
                install_crypto_provider();
                let url = format!("s3://{bucket}/{prefix}");
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_allow_http(*allow_http);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                if let Some((id, secret)) = credentials {
                    let read = |s: &crate::config::SecretRef, k: &str| {
                        s.read(&format!("{key}.s3.{k}"))
                            .map_err(|e| StoreError::Open {
                                url: url.clone(),
                                why: e.to_string(),
                            })
                    };
                    let id = read(id, "access_key_id")?;
                    let secret = read(secret, "secret_access_key")?;
                    b = b
                        .with_access_key_id(id.expose())
                        .with_secret_access_key(secret.expose());
                }
                let s3 = b.build().map_err(|e| StoreError::Open {
                    url: url.clone(),
                    why: e.to_string(),
                })?;
                Ok(Store {
                    inner: Arc::new(s3),
                    prefix: prefix.clone(),
                    local: None,
                    part_bytes,
                    url,
                })
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    fn err(&self, what: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> StoreError {
        let url = self.url.clone();
        let key = key.to_string();
        move |e| StoreError::Object {
            url,
            what,
            key,
            source: Box::new(e),
        }
    }

    /// Local store: deletes the staging files of uploads a crash left unfinished (`name#N`;
    /// never listed). Returns how many. S3: nothing to do (see the module header).
    pub fn remove_unfinished(&self) -> Result<usize, StoreError> {
        let Some(dir) = &self.local else {
            return Ok(0);
        };
        let mut removed = 0;
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let io = |path: &FsPath| {
                let path = path.to_path_buf();
                move |source| StoreError::Io { path, source }
            };
            for entry in std::fs::read_dir(&d).map_err(io(&d))? {
                let entry = entry.map_err(io(&d))?;
                let path = entry.path();
                if entry.file_type().map_err(io(&path))?.is_dir() {
                    stack.push(path);
                    continue;
                }
                let staging = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.rsplit_once('#'))
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                if staging {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every finished file under `relative` (a directory, e.g. `topic=orders`), as keys
    /// relative to the route's prefix, with their sizes.
    pub async fn list(&self, relative: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let key = self.key(relative);
        let path = Path::from(key.as_str());
        let mut stream = self.inner.list(Some(&path));
        let mut out = Vec::new();
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(self.err("list", &key))?;
            let full = meta.location.to_string();
            let rel = full.strip_prefix(&strip).unwrap_or(&full).to_string();
            out.push((rel, meta.size));
        }
        Ok(out)
    }

    /// Reads a whole finished file (tests and tools; never on the archive's hot path).
    pub async fn read(&self, relative: &str) -> Result<bytes::Bytes, StoreError> {
        let key = self.key(relative);
        let got = self
            .inner
            .get(&Path::from(key.as_str()))
            .await
            .map_err(self.err("get", &key))?;
        got.bytes().await.map_err(self.err("read", &key))
    }

    /// Uploads the finished spool `file` (`size` bytes) as `relative`: visible only once
    /// complete. One PUT up to `part_bytes`, else a multipart upload (aborted on failure).
    /// `progress` is called after each PUT or part that went in (the caller's liveness: a long
    /// upload that moves is not a stall).
    pub async fn upload(
        &self,
        relative: &str,
        file: &mut File,
        size: u64,
        progress: impl Fn(),
    ) -> Result<(), StoreError> {
        let key = self.key(relative);
        let path = Path::from(key.as_str());
        let spool = PathBuf::from("(spool file)");
        let io = |source| StoreError::Io {
            path: spool.clone(),
            source,
        };
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        if size <= self.part_bytes {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).map_err(io)?;
            self.inner
                .put(&path, PutPayload::from(buf))
                .await
                .map_err(self.err("put", &key))?;
            progress();
            return Ok(());
        }
        let mut upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(self.err("start multipart upload of", &key))?;
        let parts = async {
            let mut left = size;
            while left > 0 {
                let n = left.min(self.part_bytes);
                let mut buf = vec![0u8; n as usize];
                file.read_exact(&mut buf).map_err(io)?;
                upload
                    .put_part(PutPayload::from(buf))
                    .await
                    .map_err(self.err("upload a part of", &key))?;
                progress();
                left -= n;
            }
            upload
                .complete()
                .await
                .map_err(self.err("complete multipart upload of", &key))?;
            Ok(())
        }
        .await;
        if parts.is_err() {
            let _ = upload.abort().await;
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A local store with `part_bytes`-sized parts, in a fresh directory.
    fn local(part_bytes: u64, name: &str) -> (Store, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("schemabridge-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap();
        let store = Store {
            inner: Arc::new(fs),
            prefix: String::new(),
            local: Some(dir.clone()),
            part_bytes,
            url: format!("file://{}", dir.display()),
        };
        (store, dir)
    }

    /// Uploads `bytes` as `out/f` and returns how often `progress` was called.
    fn upload(store: &Store, dir: &FsPath, bytes: &[u8]) -> usize {
        let spool = dir.join("spool");
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&spool)
            .unwrap();
        file.write_all(bytes).unwrap();
        let calls = std::cell::Cell::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(store.upload("out/f", &mut file, bytes.len() as u64, || {
                calls.set(calls.get() + 1)
            }))
            .unwrap();
        calls.get()
    }

    #[test]
    fn an_upload_reports_progress_after_each_part() {
        let (store, dir) = local(1000, "parts");
        let bytes: Vec<u8> = (0..3500u32).map(|i| (i % 251) as u8).collect();
        // Three full parts and a half one: four calls, and the object is the whole file.
        assert_eq!(upload(&store, &dir, &bytes), 4);
        assert_eq!(std::fs::read(dir.join("out/f")).unwrap(), bytes);
        // Up to one part: one PUT, one call.
        assert_eq!(upload(&store, &dir, &bytes[..1000]), 1);
        assert_eq!(std::fs::read(dir.join("out/f")).unwrap(), &bytes[..1000]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
