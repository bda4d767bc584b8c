//! The disk cache of applied artifacts: what a node serves when it starts
//! while the traffic manager is unreachable.
//!
//! Layout: `artifacts/<sha256>.xml` (content-addressed) and
//! `manifest.json` (which API runs which revision). The manifest and the
//! list of local undeploys are written to a temporary name, synced to disk
//! and renamed, and their directory synced, so they are never torn.
//!
//! A batch of changes is written in an order that leaves a servable
//! revision of every API after a crash or power loss at any point: the new
//! artifacts are written, then made durable with one file-system sync for
//! the whole batch; only then is the manifest that names them written; and
//! only once that manifest is durable are the artifacts of replaced
//! revisions discarded. Until then the manifest on disk names files that are
//! whole. (A file whose digest does not match its name is still discarded
//! on load.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use artisync_domain::{ApiId, Revision, Sha256Digest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    pub api_id: ApiId,
    pub revision: Revision,
    pub sha256: Sha256Digest,
}

/// The manifest's format.
const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
struct Manifest {
    version: u32,
    apis: Vec<ManifestEntry>,
}

/// The manifest as written: borrowed entries, so that a write copies none.
#[derive(Serialize)]
struct ManifestOut<'a> {
    version: u32,
    apis: Vec<&'a ManifestEntry>,
}

/// An API an operator undeployed on this node (admin `undeploy-api`):
/// revisions up to `through` stay off it, across restarts too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeldEntry {
    pub api_id: ApiId,
    pub through: Revision,
}

#[derive(Debug, Serialize, Deserialize)]
struct Held {
    version: u32,
    apis: Vec<HeldEntry>,
}

/// An artifact read back from the cache, digest verified.
#[derive(Debug, Clone)]
pub struct CachedArtifact {
    pub entry: ManifestEntry,
    pub xml: Bytes,
}

#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
    /// The order of the durable steps, for the tests.
    #[cfg(test)]
    steps: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl DiskCache {
    pub fn new(dir: PathBuf) -> Self {
        DiskCache {
            dir,
            #[cfg(test)]
            steps: Default::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn artifacts_dir(&self) -> PathBuf {
        self.dir.join("artifacts")
    }

    fn artifact_path(&self, sha: &Sha256Digest) -> PathBuf {
        self.artifacts_dir().join(format!("{sha}.xml"))
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    /// Files of artifacts no longer used, kept to be written over (see
    /// [`FreeFiles`]).
    fn free_dir(&self) -> PathBuf {
        self.dir.join("free")
    }

    fn held_path(&self) -> PathBuf {
        self.dir.join("held.json")
    }

    /// Creates the directories; a node that cannot write its cache says so
    /// at start-up rather than on the first deploy.
    pub fn prepare(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.artifacts_dir())?;
        std::fs::create_dir_all(self.free_dir())
    }

    /// Reads every manifest entry whose artifact is present and intact.
    /// Corrupt or missing entries are skipped with a warning.
    pub fn load(&self) -> Vec<CachedArtifact> {
        let manifest = match std::fs::read(self.manifest_path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "cannot read the cache manifest; starting empty");
                return Vec::new();
            }
        };
        let manifest: Manifest = match serde_json::from_slice(&manifest) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "the cache manifest is corrupt; starting empty");
                return Vec::new();
            }
        };
        if manifest.version != MANIFEST_VERSION {
            tracing::warn!(
                version = manifest.version,
                "the cache manifest has a format this node does not know; starting empty"
            );
            return Vec::new();
        }
        let mut out = Vec::with_capacity(manifest.apis.len());
        for entry in manifest.apis {
            let path = self.artifact_path(&entry.sha256);
            match std::fs::read(&path) {
                Ok(xml) if Sha256Digest::of(&xml) == entry.sha256 => out.push(CachedArtifact {
                    entry,
                    xml: Bytes::from(xml),
                }),
                Ok(_) => {
                    tracing::warn!(api_id = %entry.api_id, revision = %entry.revision, path = %path.display(), "cached artifact does not match its digest; discarded");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    tracing::warn!(api_id = %entry.api_id, revision = %entry.revision, error = %e, "cached artifact is missing; skipped");
                }
            }
        }
        out
    }

    /// The operator's local undeploys, as last written.
    pub fn load_held(&self) -> Vec<HeldEntry> {
        let bytes = match std::fs::read(self.held_path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "cannot read the local undeploys; none are restored");
                return Vec::new();
            }
        };
        match serde_json::from_slice::<Held>(&bytes) {
            Ok(held) => held.apis,
            Err(e) => {
                tracing::warn!(error = %e, "the local undeploys file is corrupt; none are restored");
                Vec::new()
            }
        }
    }

    pub fn write_held(&self, apis: Vec<HeldEntry>) -> std::io::Result<()> {
        let bytes =
            serde_json::to_vec(&Held { version: 1, apis }).map_err(std::io::Error::other)?;
        write_atomically(&self.held_path(), &bytes)
    }

    #[cfg(test)]
    fn store_artifact(&self, sha: &Sha256Digest, xml: &[u8]) -> std::io::Result<()> {
        self.store_artifact_reusing(sha, xml, &mut FreeFiles::default())
            .map(drop)
    }

    /// Writes an artifact under its digest, into a free file when there is
    /// one. Straight to its name, unsynced: a file torn by a crash
    /// mid-write (or still holding what it held before) fails its digest
    /// check on load and is fetched again.
    /// Answers the file it wrote, if any (which then needs a sync before a
    /// manifest names it).
    fn store_artifact_reusing(
        &self,
        sha: &Sha256Digest,
        xml: &[u8],
        free: &mut FreeFiles,
    ) -> std::io::Result<Option<PathBuf>> {
        let path = self.artifact_path(sha);
        if path.exists() {
            return Ok(None);
        }
        self.trace("write artifact");
        if let Some(file) = free.take()
            && std::fs::rename(&file, &path).is_ok()
        {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)?;
            file.write_all(xml)?;
            return Ok(Some(path));
        }
        std::fs::write(&path, xml)?;
        Ok(Some(path))
    }

    /// Makes `written` durable, with their directory entries: file by file
    /// for a few, with one sync of the file system for a large batch (a
    /// bulk load), where one flush costs less than thousands.
    fn sync_artifacts(&self, written: &[PathBuf]) -> std::io::Result<()> {
        self.trace("sync artifacts");
        let dir = std::fs::File::open(self.artifacts_dir())?;
        if written.len() > SYNC_FILE_BY_FILE_UP_TO {
            return nix::unistd::syncfs(&dir).map_err(std::io::Error::from);
        }
        for path in written {
            match std::fs::File::open(path) {
                Ok(file) => file.sync_data()?,
                // Discarded again within the batch: nothing names it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        dir.sync_all()
    }

    #[cfg(test)]
    fn trace(&self, step: &'static str) {
        self.steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(step);
    }

    #[cfg(not(test))]
    fn trace(&self, _step: &'static str) {}

    /// Moves an artifact nothing names any more to the free files, or
    /// deletes it when there are enough of those.
    fn discard_artifact(&self, path: &Path, free: &mut FreeFiles) {
        self.trace("discard artifact");
        if free.files.len() < MAX_FREE_FILES {
            let to = self
                .free_dir()
                .join(uuid::Uuid::new_v4().simple().to_string());
            if std::fs::rename(path, &to).is_ok() {
                free.files.push(to);
                return;
            }
        }
        let _ = std::fs::remove_file(path);
    }

    /// The free files a previous run left, up to the limit; the rest are
    /// deleted.
    fn collect_free_files(&self) -> std::io::Result<FreeFiles> {
        let mut free = FreeFiles::default();
        let entries = match std::fs::read_dir(self.free_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(self.free_dir())?;
                return Ok(free);
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if free.files.len() < MAX_FREE_FILES {
                free.files.push(path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(free)
    }

    pub fn write_manifest<'a>(
        &self,
        apis: impl IntoIterator<Item = &'a ManifestEntry>,
    ) -> std::io::Result<()> {
        let manifest = ManifestOut {
            version: MANIFEST_VERSION,
            apis: apis.into_iter().collect(),
        };
        let bytes = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
        self.trace("write manifest");
        write_atomically(&self.manifest_path(), &bytes)
    }

    /// Discards artifacts no manifest entry refers to.
    fn prune(&self, keep: &HashSet<Sha256Digest>, free: &mut FreeFiles) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.artifacts_dir())? {
            let path = entry?.path();
            let keep_it = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| Sha256Digest::parse(s).ok())
                .is_some_and(|sha| keep.contains(&sha));
            if !keep_it {
                self.discard_artifact(&path, free);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Above this many new artifacts in a batch, one file-system sync replaces
/// a sync per file.
const SYNC_FILE_BY_FILE_UP_TO: usize = 64;

/// How many files of unused artifacts are kept for reuse.
const MAX_FREE_FILES: usize = 256;

/// Files of unused artifacts, written over by new ones. Every new revision
/// of an API is a new file and frees the previous one; deleting and
/// creating a file per deploy makes the file system allocate an inode each
/// time, which on ext4 without a journal means scanning past every inode
/// freed in the last seconds (it avoids reusing those), and grows with the
/// deploy rate. Reused files need no new inode.
#[derive(Debug, Default)]
struct FreeFiles {
    files: Vec<PathBuf>,
}

impl FreeFiles {
    fn take(&mut self) -> Option<PathBuf> {
        self.files.pop()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once its directory is synced.
        match path.parent() {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The least time between two writes of the cache (as the status report's
/// debounce: a burst of deploys is written in a few batches, not one
/// manifest rewrite per deploy). What a crash loses of
/// this is re-fetched at the next start (or, with the traffic manager
/// down, the node starts on the revisions before).
const COALESCE_WINDOW: std::time::Duration = std::time::Duration::from_millis(200);

/// What the writer task is asked to do.
pub enum CacheCommand {
    /// At start-up: what the cache holds and the node serves from it. Files
    /// nothing names are deleted.
    Seed(Vec<ManifestEntry>),
    /// `entry.api_id` now runs this artifact.
    Applied { entry: ManifestEntry, xml: Bytes },
    /// The API no longer runs on this node.
    Removed(ApiId),
    /// The set of local undeploys changed.
    Held(Vec<HeldEntry>),
    /// Write what is queued, then stop.
    Close,
}

/// Writes the cache off the deploy path: deploys only queue what changed;
/// a background task keeps the manifest, does the file I/O, coalesces
/// manifest rewrites and deletes artifacts nothing refers to any more.
#[derive(Clone)]
pub struct CacheWriter {
    tx: mpsc::UnboundedSender<CacheCommand>,
}

/// The writer's view of the cache: the manifest and how many entries use
/// each artifact file.
#[derive(Default)]
struct CacheContents {
    /// Ordered, so the manifest is written in a stable order unsorted.
    manifest: BTreeMap<ApiId, ManifestEntry>,
    /// `None` until the first batch picks up what a previous run left.
    free: Option<FreeFiles>,
    uses: HashMap<Sha256Digest, usize>,
}

impl CacheWriter {
    pub fn spawn(cache: DiskCache) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<CacheCommand>();
        let task = tokio::spawn(async move {
            let mut contents = CacheContents::default();
            let mut last_write: Option<tokio::time::Instant> = None;
            while let Some(first) = rx.recv().await {
                // A change that follows a write closely waits for the rest
                // of the window, so that a burst of deploys costs a few
                // file syncs instead of two per deploy.
                if !matches!(first, CacheCommand::Close)
                    && let Some(last) = last_write
                {
                    tokio::time::sleep_until(last + COALESCE_WINDOW).await;
                }
                last_write = Some(tokio::time::Instant::now());
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let closing = batch.iter().any(|c| matches!(c, CacheCommand::Close));
                let cache = cache.clone();
                let written = tokio::task::spawn_blocking(move || {
                    let result = write_batch(&cache, batch, &mut contents);
                    (contents, result)
                })
                .await;
                match written {
                    Ok((kept, result)) => {
                        contents = kept;
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "writing the disk cache failed; the node keeps serving, but a restart without upstream may serve older revisions");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the disk cache writer failed; the node keeps serving, but a restart without upstream may serve older revisions");
                        return;
                    }
                }
                if closing {
                    return;
                }
            }
        });
        (CacheWriter { tx }, task)
    }

    pub fn send(&self, command: CacheCommand) {
        // The writer only stops at shutdown; losing a write then is harmless.
        let _ = self.tx.send(command);
    }
}

/// Applies a batch of changes: artifacts first, then one manifest write,
/// then the discarding of artifacts no entry uses any more.
fn write_batch(
    cache: &DiskCache,
    batch: Vec<CacheCommand>,
    contents: &mut CacheContents,
) -> std::io::Result<()> {
    let mut free = match contents.free.take() {
        Some(free) => free,
        None => cache.collect_free_files()?,
    };
    let result = write_changes(cache, batch, contents, &mut free);
    contents.free = Some(free);
    result
}

fn write_changes(
    cache: &DiskCache,
    batch: Vec<CacheCommand>,
    contents: &mut CacheContents,
    free: &mut FreeFiles,
) -> std::io::Result<()> {
    let mut manifest_changed = false;
    let mut written = Vec::new();
    let mut held = None;
    let mut unused = HashSet::new();
    for command in batch {
        match command {
            CacheCommand::Seed(entries) => {
                contents.manifest.clear();
                contents.uses.clear();
                for entry in entries {
                    *contents.uses.entry(entry.sha256).or_default() += 1;
                    contents.manifest.insert(entry.api_id, entry);
                }
                // Artifacts of entries that no longer load, and leftovers.
                let keep: HashSet<Sha256Digest> = contents.uses.keys().copied().collect();
                cache.prune(&keep, free)?;
                manifest_changed = true;
            }
            CacheCommand::Applied { entry, xml } => {
                written.extend(cache.store_artifact_reusing(&entry.sha256, &xml, free)?);
                *contents.uses.entry(entry.sha256).or_default() += 1;
                unused.remove(&entry.sha256);
                if let Some(old) = contents.manifest.insert(entry.api_id, entry) {
                    release(contents, old.sha256, &mut unused);
                }
                manifest_changed = true;
            }
            CacheCommand::Removed(api_id) => {
                if let Some(old) = contents.manifest.remove(&api_id) {
                    release(contents, old.sha256, &mut unused);
                    manifest_changed = true;
                }
            }
            // Only the newest list of a batch matters.
            CacheCommand::Held(entries) => held = Some(entries),
            CacheCommand::Close => {}
        }
    }
    if let Some(entries) = held {
        cache.write_held(entries)?;
    }
    if manifest_changed {
        // What the manifest names must be on disk before the manifest is.
        if !written.is_empty() {
            cache.sync_artifacts(&written)?;
        }
        cache.write_manifest(contents.manifest.values())?;
        // Only after the durable manifest no longer names them.
        for sha in unused {
            cache.discard_artifact(&cache.artifact_path(&sha), free);
        }
    }
    Ok(())
}

fn release(contents: &mut CacheContents, sha: Sha256Digest, unused: &mut HashSet<Sha256Digest>) {
    if let Some(n) = contents.uses.get_mut(&sha) {
        *n -= 1;
        if *n == 0 {
            contents.uses.remove(&sha);
            unused.insert(sha);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_cache() -> DiskCache {
        let dir = std::env::temp_dir().join(format!("artisync-cache-{}", uuid::Uuid::new_v4()));
        let cache = DiskCache::new(dir);
        cache.prepare().unwrap();
        cache
    }

    #[test]
    fn round_trip_and_corruption_is_discarded() {
        let cache = temp_cache();
        let good = b"<api name=\"a\" context=\"/a\"/>".to_vec();
        let bad = b"<api name=\"b\" context=\"/b\"/>".to_vec();
        let (good_sha, bad_sha) = (Sha256Digest::of(&good), Sha256Digest::of(&bad));
        cache.store_artifact(&good_sha, &good).unwrap();
        cache.store_artifact(&bad_sha, &bad).unwrap();
        let entries = vec![
            ManifestEntry {
                api_id: ApiId::new_random(),
                revision: Revision::FIRST,
                sha256: good_sha,
            },
            ManifestEntry {
                api_id: ApiId::new_random(),
                revision: Revision::FIRST,
                sha256: bad_sha,
            },
        ];
        cache.write_manifest(&entries).unwrap();
        // Corrupt the second artifact on disk.
        std::fs::write(cache.artifact_path(&bad_sha), b"tampered").unwrap();
        let loaded = cache.load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].entry, entries[0]);
        assert_eq!(&loaded[0].xml[..], &good[..]);
        assert!(
            !cache.artifact_path(&bad_sha).exists(),
            "corrupt entry is deleted"
        );
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[tokio::test]
    async fn a_batch_syncs_new_artifacts_before_the_manifest_and_discards_old_ones_after_it() {
        let cache = temp_cache();
        let (writer, task) = CacheWriter::spawn(cache.clone());
        let id = ApiId::new_random();
        let applied = |r: i64, xml: &'static str| CacheCommand::Applied {
            entry: ManifestEntry {
                api_id: id,
                revision: Revision::new(r).unwrap(),
                sha256: Sha256Digest::of(xml.as_bytes()),
            },
            xml: Bytes::from_static(xml.as_bytes()),
        };
        writer.send(applied(1, "<api>1</api>"));
        writer.send(applied(2, "<api>2</api>"));
        writer.send(CacheCommand::Close);
        task.await.unwrap();
        let steps = cache.steps.lock().unwrap().clone();
        let at = |step: &str| {
            steps
                .iter()
                .position(|s| *s == step)
                .unwrap_or_else(|| panic!("no {step:?} in {steps:?}"))
        };
        let last_write = steps.iter().rposition(|s| *s == "write artifact").unwrap();
        let manifest = steps.iter().rposition(|s| *s == "write manifest").unwrap();
        assert!(last_write < at("sync artifacts"), "{steps:?}");
        let sync_before_manifest = steps[..manifest]
            .iter()
            .rposition(|s| *s == "sync artifacts");
        assert!(
            sync_before_manifest.is_some_and(|i| i > last_write),
            "{steps:?}"
        );
        // Revision 1's file, replaced in the same batch, goes only after.
        assert!(at("discard artifact") > manifest, "{steps:?}");
        assert_eq!(cache.load()[0].entry.revision, Revision::new(2).unwrap());
        let _ = std::fs::remove_dir_all(cache.dir());
    }

    #[test]
    fn prune_keeps_only_referenced_artifacts() {
        let cache = temp_cache();
        let a = Sha256Digest::of(b"a");
        let b = Sha256Digest::of(b"b");
        cache.store_artifact(&a, b"a").unwrap();
        cache.store_artifact(&b, b"b").unwrap();
        let mut free = FreeFiles::default();
        assert_eq!(cache.prune(&HashSet::from([a]), &mut free).unwrap(), 1);
        assert!(cache.artifact_path(&a).exists());
        assert!(!cache.artifact_path(&b).exists());
        assert_eq!(free.files.len(), 1, "the pruned file is kept for reuse");
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn at_most_so_many_freed_files_are_kept() {
        let cache = temp_cache();
        cache.prepare().unwrap();
        for i in 0..MAX_FREE_FILES + 10 {
            let xml = format!("<api n=\"{i}\"/>");
            cache
                .store_artifact(&Sha256Digest::of(xml.as_bytes()), xml.as_bytes())
                .unwrap();
        }
        let mut contents = CacheContents::default();
        write_batch(&cache, vec![CacheCommand::Seed(Vec::new())], &mut contents).unwrap();
        assert_eq!(std::fs::read_dir(cache.artifacts_dir()).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_dir(cache.free_dir()).unwrap().count(),
            MAX_FREE_FILES
        );
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn freed_files_are_written_over() {
        let cache = temp_cache();
        let api_id = ApiId::new_random();
        let mut contents = CacheContents::default();
        // Long revisions first, so a reused file must be truncated.
        let revisions: Vec<String> = (1..=300)
            .map(|i| format!("<api r=\"{i}\">{}</api>", "x".repeat(1000 - i)))
            .collect();
        for (i, xml) in revisions.iter().enumerate() {
            let entry = ManifestEntry {
                api_id,
                revision: Revision::new(i as i64 + 1).unwrap(),
                sha256: Sha256Digest::of(xml.as_bytes()),
            };
            let applied = CacheCommand::Applied {
                entry,
                xml: Bytes::from(xml.clone()),
            };
            write_batch(&cache, vec![applied], &mut contents).unwrap();
        }
        let loaded = cache.load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].entry.revision, Revision::new(300).unwrap());
        assert_eq!(loaded[0].xml.as_ref(), revisions[299].as_bytes());
        let artifacts = std::fs::read_dir(cache.artifacts_dir()).unwrap().count();
        assert_eq!(artifacts, 1, "only the running revision is an artifact");
        let free = std::fs::read_dir(cache.free_dir()).unwrap().count();
        assert_eq!(free, 1, "one file goes round: freed, then written over");

        // A new writer picks up the free files a previous one left.
        let mut restarted = CacheContents::default();
        let other = ApiId::new_random();
        let xml = "<api/>";
        let entry = ManifestEntry {
            api_id: other,
            revision: Revision::new(1).unwrap(),
            sha256: Sha256Digest::of(xml.as_bytes()),
        };
        let seed = CacheCommand::Seed(vec![loaded[0].entry.clone()]);
        let applied = CacheCommand::Applied {
            entry,
            xml: Bytes::from_static(xml.as_bytes()),
        };
        write_batch(&cache, vec![seed, applied], &mut restarted).unwrap();
        assert_eq!(std::fs::read_dir(cache.free_dir()).unwrap().count(), 0);
        assert_eq!(cache.load().len(), 2);
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn replaced_and_removed_artifacts_are_deleted_once_unused() {
        let cache = temp_cache();
        // A file an earlier run left behind.
        let stale = Sha256Digest::of(b"stale");
        cache.store_artifact(&stale, b"stale").unwrap();
        let applied = |api_id, xml: &[u8]| CacheCommand::Applied {
            entry: ManifestEntry {
                api_id,
                revision: Revision::FIRST,
                sha256: Sha256Digest::of(xml),
            },
            xml: Bytes::copy_from_slice(xml),
        };
        let (a, b) = (ApiId::new_random(), ApiId::new_random());
        let mut contents = CacheContents::default();
        write_batch(&cache, vec![CacheCommand::Seed(Vec::new())], &mut contents).unwrap();
        assert!(!cache.artifact_path(&stale).exists(), "swept by the seed");
        // Two APIs share one artifact; a second deploy replaces a's.
        write_batch(
            &cache,
            vec![applied(a, b"shared"), applied(b, b"shared")],
            &mut contents,
        )
        .unwrap();
        write_batch(&cache, vec![applied(a, b"a-v2")], &mut contents).unwrap();
        let shared = Sha256Digest::of(b"shared");
        assert!(cache.artifact_path(&shared).exists(), "b still uses it");
        write_batch(&cache, vec![CacheCommand::Removed(b)], &mut contents).unwrap();
        assert!(
            !cache.artifact_path(&shared).exists(),
            "nothing uses it any more"
        );
        let loaded = cache.load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].entry.api_id, a);
        assert_eq!(&loaded[0].xml[..], b"a-v2");
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn a_seeded_cache_keeps_every_entry_across_later_changes() {
        let cache = temp_cache();
        let entries: Vec<ManifestEntry> = (0..50)
            .map(|i| {
                let xml = format!("artifact {i}");
                let sha256 = Sha256Digest::of(xml.as_bytes());
                cache.store_artifact(&sha256, xml.as_bytes()).unwrap();
                ManifestEntry {
                    api_id: ApiId::new_random(),
                    revision: Revision::FIRST,
                    sha256,
                }
            })
            .collect();
        cache.write_manifest(&entries).unwrap();
        // A restart: seeded with what was loaded, then one more deploy.
        let mut contents = CacheContents::default();
        write_batch(
            &cache,
            vec![CacheCommand::Seed(entries.clone())],
            &mut contents,
        )
        .unwrap();
        let new_api = ApiId::new_random();
        let command = CacheCommand::Applied {
            entry: ManifestEntry {
                api_id: new_api,
                revision: Revision::FIRST,
                sha256: Sha256Digest::of(b"new"),
            },
            xml: Bytes::from_static(b"new"),
        };
        write_batch(&cache, vec![command], &mut contents).unwrap();
        assert_eq!(cache.load().len(), 51, "nothing of the seed was lost");
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn local_undeploys_round_trip() {
        let cache = temp_cache();
        assert!(cache.load_held().is_empty());
        let held = vec![HeldEntry {
            api_id: ApiId::new_random(),
            through: Revision::FIRST,
        }];
        write_batch(
            &cache,
            vec![CacheCommand::Held(held.clone())],
            &mut CacheContents::default(),
        )
        .unwrap();
        assert_eq!(cache.load_held(), held);
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn a_missing_or_corrupt_manifest_loads_empty() {
        let cache = temp_cache();
        assert!(cache.load().is_empty());
        std::fs::write(cache.manifest_path(), b"{not json").unwrap();
        assert!(cache.load().is_empty());
        std::fs::remove_dir_all(cache.dir()).unwrap();
    }
}
