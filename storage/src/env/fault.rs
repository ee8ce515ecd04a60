//! [`FaultInjectingFs`]: an in-memory [`Storage`] for tests that models what
//! survives a machine crash and injects I/O errors.
//!
//! Model (the durability rules of [`super`], made executable):
//! - a file is an inode: its bytes and `synced_len`, the prefix that
//!   [`WritableFile::sync`] made durable. Appends go straight into the inode,
//!   so readers see the latest bytes at once, like the OS page cache;
//! - every directory has two namespaces (name → inode): the *live* one, which
//!   `create`, `rename`, `link`, `delete` and `lock` change, and the *durable* one,
//!   a copy of the live one as of the directory's last `sync_dir`;
//! - directories themselves (`create_dir_all`) are durable at once: the engine
//!   creates its directory once, before anything that could be lost;
//! - `create` on an existing name truncates that inode in place, so its old
//!   content is gone even if the name's entry was durable (the worst case of
//!   real file systems);
//! - a simulated crash replaces every live namespace by its durable one and
//!   cuts every surviving file to its synced length (or, with
//!   [`FaultInjectingFs::crash_keeping_unsynced`], to a random length between
//!   that and its full length: unsynced data is lost from the end, never from
//!   the middle). Handles opened before the crash fail from then on.
//!
//! `Clone` shares one file system; all state sits behind one mutex (file data
//! behind a second one, always taken after the first).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{FileLock, RandomAccessFile, Storage, WritableFile};
use crate::error::{Error, Result};

/// Which faults to inject; the default injects none. Installed with
/// [`FaultInjectingFs::set_plan`], cleared by a simulated crash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The first `n` mutating operations after `set_plan` succeed and every
    /// later one fails: a crash point. Mutating operations are `create`,
    /// `append`, `flush`, `sync`, `rename`, `link`, `delete` and `sync_dir`.
    pub fail_after_mutations: Option<u64>,
    /// Each file `sync` and each `sync_dir` fails with probability 1/n
    /// (nothing becomes durable).
    pub fail_sync_one_in: Option<u64>,
    /// Each `append` fails with probability 1/n (nothing is appended).
    pub fail_append_one_in: Option<u64>,
    /// Each positional read fails with probability 1/n.
    pub fail_read_one_in: Option<u64>,
    /// Every `link` fails, as between two file systems (callers fall back
    /// to copying).
    pub refuse_links: bool,
    /// Seed of the generator behind the `*_one_in` faults.
    pub seed: u64,
}

/// The in-memory, crash-simulating, fault-injecting file system.
#[derive(Clone)]
pub struct FaultInjectingFs {
    state: Arc<Mutex<FsState>>,
}

type Inode = Arc<Mutex<FileData>>;

#[derive(Default)]
struct FileData {
    data: Vec<u8>,
    /// Invariant: `synced_len <= data.len()`.
    synced_len: usize,
}

/// Entries of one directory, by name.
type Namespace = BTreeMap<String, Inode>;

#[derive(Default)]
struct FsState {
    dirs: BTreeSet<PathBuf>,
    live: BTreeMap<PathBuf, Namespace>,
    durable: BTreeMap<PathBuf, Namespace>,
    /// Bumped by every crash; handles from an older epoch are dead.
    epoch: u64,
    locks: HashSet<PathBuf>,
    plan: FaultPlan,
    /// `mutations` when the plan was installed.
    plan_base: u64,
    /// Mutating operations carried out since the file system was created.
    mutations: u64,
    rng: u64,
}

impl std::fmt::Debug for FaultInjectingFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("FaultInjectingFs")
            .field("dirs", &st.dirs.len())
            .field("epoch", &st.epoch)
            .field("mutations", &st.mutations)
            .field("plan", &st.plan)
            .finish()
    }
}

impl Default for FaultInjectingFs {
    fn default() -> Self {
        FaultInjectingFs::new()
    }
}

impl FaultInjectingFs {
    /// An empty file system; the roots `/` and `` (the working directory) exist.
    pub fn new() -> FaultInjectingFs {
        let state = FsState {
            dirs: BTreeSet::from([PathBuf::from("/"), PathBuf::new()]),
            ..FsState::default()
        };
        FaultInjectingFs {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Install `plan`, replacing the previous one; its generator restarts
    /// from `plan.seed` and its mutation budget counts from now.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut st = self.state.lock();
        st.rng = plan.seed;
        st.plan = plan;
        st.plan_base = st.mutations;
    }

    /// Mutating operations carried out so far (failed ones are not counted).
    pub fn mutations(&self) -> u64 {
        self.state.lock().mutations
    }

    /// Simulate power loss: only synced data under durable names survives.
    pub fn crash(&self) {
        self.crash_with(None);
    }

    /// Like [`FaultInjectingFs::crash`], but each surviving file keeps a
    /// prefix of its unsynced tail whose length is drawn from `seed`.
    pub fn crash_keeping_unsynced(&self, seed: u64) {
        self.crash_with(Some(seed));
    }

    fn crash_with(&self, keep_seed: Option<u64>) {
        let mut st = self.state.lock();
        st.epoch += 1;
        st.locks.clear();
        st.plan = FaultPlan::default();
        st.live = st.durable.clone();
        let mut rng = keep_seed.unwrap_or(0);
        let mut cut = HashSet::new();
        for inode in st.durable.values().flat_map(|ns| ns.values()) {
            // A renamed file can be durable under two names; cut it once.
            if !cut.insert(Arc::as_ptr(inode)) {
                continue;
            }
            let mut file = inode.lock();
            let unsynced = file.data.len().saturating_sub(file.synced_len) as u64;
            let kept = match keep_seed {
                None => 0,
                // The remainder is at most `unsynced`, so it fits in usize.
                Some(_) => (splitmix64(&mut rng) % (unsynced + 1)) as usize,
            };
            let len = file.synced_len + kept;
            file.data.truncate(len);
            file.synced_len = file.data.len();
        }
    }
}

impl FsState {
    /// Fail when the plan's crash point has been reached.
    fn check_mutation(&self, path: &Path, op: &str) -> Result<()> {
        match self.plan.fail_after_mutations {
            Some(n) if self.mutations - self.plan_base >= n => Err(injected(
                path,
                format!("{op} refused: crash point after {n} mutations reached"),
            )),
            _ => Ok(()),
        }
    }

    /// True with probability 1/n when the plan field chosen by `one_in` is
    /// `Some(n)` (never for `None` or `Some(0)`).
    fn roll(&mut self, one_in: fn(&FaultPlan) -> Option<u64>) -> bool {
        match one_in(&self.plan) {
            Some(n) if n > 0 => splitmix64(&mut self.rng).is_multiple_of(n),
            _ => false,
        }
    }

    fn check_epoch(&self, epoch: u64, path: &Path) -> Result<()> {
        if epoch == self.epoch {
            Ok(())
        } else {
            Err(injected(path, "handle from before the simulated crash"))
        }
    }

    fn require_dir(&self, dir: &Path) -> Result<()> {
        if self.dirs.contains(dir) {
            Ok(())
        } else {
            Err(not_found(dir, "no such directory"))
        }
    }

    fn lookup(&self, path: &Path) -> Result<Inode> {
        let (dir, name) = split(path)?;
        self.live
            .get(&dir)
            .and_then(|ns| ns.get(&name))
            .cloned()
            .ok_or_else(|| not_found(path, "no such file"))
    }
}

/// Split a file path into its directory and its name.
fn split(path: &Path) -> Result<(PathBuf, String)> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::InvalidArgument(format!("{} does not name a UTF-8 file", path.display()))
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    Ok((dir.to_path_buf(), name.to_string()))
}

fn injected(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::io(
        path,
        std::io::Error::other(format!("injected fault: {what}")),
    )
}

fn not_found(path: &Path, what: &str) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{what} in the simulated file system"),
        ),
    )
}

/// One step of splitmix64: a tiny, well-mixed deterministic generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A writable handle; dead after a simulated crash.
struct FaultWritable {
    state: Arc<Mutex<FsState>>,
    path: PathBuf,
    inode: Inode,
    epoch: u64,
    appended: u64,
}

impl FaultWritable {
    /// Run a mutating operation on this handle's file under the state lock,
    /// applying the crash point, and count it when it succeeds.
    fn mutate(
        &mut self,
        op: &str,
        body: impl FnOnce(&mut FsState, &mut FileData) -> Result<()>,
    ) -> Result<()> {
        let mut st = self.state.lock();
        st.check_epoch(self.epoch, &self.path)?;
        st.check_mutation(&self.path, op)?;
        body(&mut st, &mut self.inode.lock())?;
        st.mutations += 1;
        Ok(())
    }
}

impl WritableFile for FaultWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        let path = self.path.clone();
        self.mutate("append", |st, file| {
            if st.roll(|p| p.fail_append_one_in) {
                return Err(injected(&path, "append failed"));
            }
            file.data.extend_from_slice(data);
            Ok(())
        })?;
        self.appended += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.mutate("flush", |_, _| Ok(()))
    }

    fn sync(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.mutate("sync", |st, file| {
            if st.roll(|p| p.fail_sync_one_in) {
                return Err(injected(&path, "sync failed"));
            }
            file.synced_len = file.data.len();
            Ok(())
        })
    }

    fn len(&self) -> u64 {
        self.appended
    }
}

/// A read handle; sees the file's latest bytes, dead after a simulated crash.
struct FaultReadable {
    state: Arc<Mutex<FsState>>,
    path: PathBuf,
    inode: Inode,
    epoch: u64,
    size: u64,
}

impl RandomAccessFile for FaultReadable {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut st = self.state.lock();
        st.check_epoch(self.epoch, &self.path)?;
        if st.roll(|p| p.fail_read_one_in) {
            return Err(injected(&self.path, "read failed"));
        }
        let file = self.inode.lock();
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?));
        let src = range.and_then(|r| file.data.get(r)).ok_or_else(|| {
            Error::io(
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "reading {} bytes at offset {offset} of a {}-byte file",
                        buf.len(),
                        file.data.len()
                    ),
                ),
            )
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }
}

/// An exclusive lock; released on drop unless a crash released it first.
struct FaultLock {
    state: Arc<Mutex<FsState>>,
    path: PathBuf,
    epoch: u64,
}

impl std::fmt::Debug for FaultLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultLock")
            .field("path", &self.path)
            .finish()
    }
}

impl FileLock for FaultLock {}

impl Drop for FaultLock {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        // After a crash the lock may belong to a new holder.
        if st.epoch == self.epoch {
            st.locks.remove(&self.path);
        }
    }
}

impl Storage for FaultInjectingFs {
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let mut st = self.state.lock();
        st.check_mutation(path, "create")?;
        let (dir, name) = split(path)?;
        st.require_dir(&dir)?;
        let inode = st
            .live
            .entry(dir)
            .or_default()
            .entry(name)
            .or_default()
            .clone();
        {
            let mut file = inode.lock();
            file.data.clear();
            file.synced_len = 0;
        }
        st.mutations += 1;
        Ok(Box::new(FaultWritable {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
            inode,
            epoch: st.epoch,
            appended: 0,
        }))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn RandomAccessFile>> {
        let st = self.state.lock();
        let inode = st.lookup(path)?;
        let size = inode.lock().data.len() as u64;
        Ok(Arc::new(FaultReadable {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
            inode,
            epoch: st.epoch,
            size,
        }))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let st = self.state.lock();
        st.require_dir(dir)?;
        let mut names: BTreeSet<String> = st
            .live
            .get(dir)
            .map(|ns| ns.keys().cloned().collect())
            .unwrap_or_default();
        for sub in &st.dirs {
            if sub.parent() == Some(dir)
                && let Some(name) = sub.file_name().and_then(|n| n.to_str())
            {
                names.insert(name.to_string());
            }
        }
        Ok(names.into_iter().collect())
    }

    fn delete(&self, path: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_mutation(path, "delete")?;
        let (dir, name) = split(path)?;
        let removed = st.live.get_mut(&dir).and_then(|ns| ns.remove(&name));
        if removed.is_none() {
            return Err(not_found(path, "no such file"));
        }
        st.mutations += 1;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_mutation(from, "rename")?;
        let inode = st.lookup(from)?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        st.require_dir(&to_dir)?;
        if let Some(ns) = st.live.get_mut(&from_dir) {
            ns.remove(&from_name);
        }
        st.live.entry(to_dir).or_default().insert(to_name, inode);
        st.mutations += 1;
        Ok(())
    }

    fn link(&self, from: &Path, to: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_mutation(from, "link")?;
        if st.plan.refuse_links {
            return Err(injected(
                from,
                format!("link to {} refused (another file system)", to.display()),
            ));
        }
        let inode = st.lookup(from)?;
        let (to_dir, to_name) = split(to)?;
        st.require_dir(&to_dir)?;
        let names = st.live.entry(to_dir).or_default();
        if names.contains_key(&to_name) {
            return Err(Error::io(
                from,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "link target {} exists in the simulated file system",
                        to.display()
                    ),
                ),
            ));
        }
        names.insert(to_name, inode);
        st.mutations += 1;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut st = self.state.lock();
        st.check_mutation(dir, "sync_dir")?;
        st.require_dir(dir)?;
        if st.roll(|p| p.fail_sync_one_in) {
            return Err(injected(dir, "directory sync failed"));
        }
        let entries = st.live.get(dir).cloned().unwrap_or_default();
        st.durable.insert(dir.to_path_buf(), entries);
        st.mutations += 1;
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut st = self.state.lock();
        for ancestor in dir.ancestors() {
            st.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.dirs.contains(path) || st.lookup(path).is_ok()
    }

    fn file_size(&self, path: &Path) -> Result<u64> {
        let st = self.state.lock();
        let inode = st.lookup(path)?;
        let len = inode.lock().data.len() as u64;
        Ok(len)
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        let mut st = self.state.lock();
        let (dir, name) = split(path)?;
        st.require_dir(&dir)?;
        if st.locks.contains(path) {
            return Err(Error::Locked {
                path: dir,
                lock_file: path.to_path_buf(),
            });
        }
        st.locks.insert(path.to_path_buf());
        // Like the local file system, locking leaves an (undurable) lock file.
        st.live.entry(dir).or_default().entry(name).or_default();
        Ok(Box::new(FaultLock {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
            epoch: st.epoch,
        }))
    }
}
