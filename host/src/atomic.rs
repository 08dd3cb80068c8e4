//! Replacing a config file without ever losing it: the write path of
//! `scream-ice migrate` and `scream-ice rollback`.
//!
//! [`replace`] runs these steps, each named by a [`Step`]:
//!
//! 1. [`Step::Backup`]: the current target (if it exists) is copied to a
//!    temporary file in the same directory, fsynced, and hard-linked to
//!    `FILE.<UTC timestamp>.<kind>.bak` — a link never replaces an existing
//!    name, so no later run overwrites a backup — then the directory is
//!    fsynced, so the backup is durable before the target changes.
//! 2. [`Step::TempWrite`]: the new text goes to a temporary file in the same
//!    directory (`.FILE.scream-ice-PID-N.tmp`), created exclusively with the
//!    target's mode (0600 when the new text holds TURN credentials and the
//!    mode would let others read it) and owner.
//! 3. [`Step::TempSync`]: the temporary file is fsynced.
//! 4. [`Step::Validate`]: it is read back from disk and checked by the
//!    caller's validator (the daemon's own config parser).
//! 5. [`Step::Rename`]: it is renamed over the target (atomic: a reader,
//!    or a crash, sees the old or the complete new file, never a mix).
//! 6. [`Step::DirSync`]: the directory is fsynced, so the rename is durable.
//!
//! On a failure at any step, the target is byte for byte what it was (a
//! failure after the rename restores the old bytes through the same path),
//! the temporary file and this run's backup are removed, and the error
//! names the step in one line. A process killed at any moment leaves the
//! target old or new; its temporary file is removed by the next run
//! (temporary names carry the writer's PID, and only files of processes
//! that no longer exist are removed).
//!
//! Every filesystem call goes through the [`Fs`] trait, with the step it
//! belongs to, so tests inject a failure at each step ([`OsFs`] is the
//! real one).

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A step of [`replace`]; every [`Fs`] call is made on behalf of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Reading the current target.
    ReadTarget,
    /// Copying the current target to its backup (write, fsync, link, dir fsync).
    Backup,
    /// Creating and writing the temporary file.
    TempWrite,
    /// Fsyncing the temporary file.
    TempSync,
    /// Reading the temporary file back and validating it.
    Validate,
    /// Renaming the temporary file over the target.
    Rename,
    /// Fsyncing the directory after the rename.
    DirSync,
    /// Removing temporary files (this run's after a failure, or stale ones).
    Cleanup,
}

impl Step {
    /// Every step, in the order [`replace`] runs them.
    pub const ALL: [Step; 8] = [
        Step::ReadTarget,
        Step::Backup,
        Step::TempWrite,
        Step::TempSync,
        Step::Validate,
        Step::Rename,
        Step::DirSync,
        Step::Cleanup,
    ];

    /// A short name for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::ReadTarget => "read target",
            Step::Backup => "backup",
            Step::TempWrite => "write temporary file",
            Step::TempSync => "fsync temporary file",
            Step::Validate => "validate",
            Step::Rename => "rename",
            Step::DirSync => "fsync directory",
            Step::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An open file being written.
pub trait WriteFile {
    /// Write all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Flush data and metadata to the device (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;
}

impl WriteFile for File {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(self, bytes)
    }
    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }
}

/// The filesystem calls [`replace`] makes, each with the step it serves.
pub trait Fs {
    /// Read a whole file, refusing one longer than `limit` bytes.
    fn read(&self, step: Step, path: &Path, limit: u64) -> io::Result<Vec<u8>>;
    /// Permission bits and owner of an existing file; `None` if it does
    /// not exist.
    fn stat(&self, step: Step, path: &Path) -> io::Result<Option<FileMeta>>;
    /// Create `path` exclusively (it must not exist) with exactly `mode`
    /// (umask not applied) and, when given, this owner.
    fn create_new(
        &self,
        step: Step,
        path: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<Box<dyn WriteFile>>;
    /// Hard-link `from` to `to`; fails if `to` exists.
    fn hard_link(&self, step: Step, from: &Path, to: &Path) -> io::Result<()>;
    /// Rename `from` over `to`.
    fn rename(&self, step: Step, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove_file(&self, step: Step, path: &Path) -> io::Result<()>;
    /// Fsync a directory.
    fn sync_dir(&self, step: Step, dir: &Path) -> io::Result<()>;
    /// The names in a directory.
    fn list_dir(&self, step: Step, dir: &Path) -> io::Result<Vec<String>>;
}

/// Mode bits and owner of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

impl Fs for OsFs {
    fn read(&self, _: Step, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let f = File::open(path)?;
        let mut v = Vec::new();
        f.take(limit.saturating_add(1)).read_to_end(&mut v)?;
        if v.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("larger than {limit} bytes"),
            ));
        }
        Ok(v)
    }

    fn stat(&self, _: Step, path: &Path) -> io::Result<Option<FileMeta>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(FileMeta {
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_new(
        &self,
        _: Step,
        path: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<Box<dyn WriteFile>> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let configure = || -> io::Result<()> {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
            // After the chown (which may clear set-id bits), and exact:
            // the umask does not apply to fchmod.
            f.set_permissions(Permissions::from_mode(mode))
        };
        if let Err(e) = configure() {
            drop(f);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(Box::new(f))
    }

    fn hard_link(&self, _: Step, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn rename(&self, _: Step, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, _: Step, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, _: Step, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn list_dir(&self, _: Step, dir: &Path) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir)? {
            if let Some(n) = e?.file_name().to_str() {
                v.push(n.to_string());
            }
        }
        Ok(v)
    }
}

/// Why [`replace`] failed: the step, the path and the cause, one line.
/// Unless [`WriteError::target_unknown`], the target is unchanged.
#[derive(Debug, thiserror::Error)]
#[error("{step} failed ({path}): {source}{}", self.note())]
pub struct WriteError {
    /// The step that failed.
    pub step: Step,
    /// The file it failed on.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
    /// The old text could not be put back after a failure past the
    /// rename: the target may hold the new text; the old one is in
    /// `backup`.
    pub target_unknown: bool,
    /// The backup kept because the target could not be restored.
    pub backup: Option<PathBuf>,
}

impl WriteError {
    fn note(&self) -> String {
        match (&self.backup, self.target_unknown) {
            (Some(b), true) => format!(
                "; the target could not be restored and may hold the new text, the old one is in {}",
                b.display()
            ),
            _ => String::new(),
        }
    }
}

fn fail(step: Step, path: &Path, source: io::Error) -> WriteError {
    WriteError {
        step,
        path: path.to_path_buf(),
        source,
        target_unknown: false,
        backup: None,
    }
}

/// What [`replace`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// The backup of the old target (`None` when there was no target).
    pub backup: Option<PathBuf>,
    /// The mode the new file got.
    pub mode: u32,
}

/// What the caller asks [`replace`] to do.
pub struct Replacement<'a> {
    /// The file to replace (or create).
    pub target: &'a Path,
    /// The new text.
    pub text: &'a str,
    /// The mode when the target does not exist yet (the target's own mode
    /// is kept otherwise).
    pub new_file_mode: u32,
    /// The new text holds secrets (TURN credentials): group and other
    /// permission bits are cleared (0644 becomes 0600).
    pub secret: bool,
    /// The backup's kind in its name, `FILE.<timestamp>.<kind>.bak`
    /// (`migrate`, `rollback`).
    pub backup_kind: &'a str,
    /// Checks the text read back from the temporary file; the error is
    /// reported as a [`Step::Validate`] failure.
    pub validate: &'a dyn Fn(&str) -> Result<(), String>,
}

/// The suffix every backup name ends with.
pub const BACKUP_SUFFIX: &str = ".bak";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn dir_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(target: &Path) -> String {
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".to_string())
}

/// `.NAME.scream-ice-PID-` : the prefix of this process's temporary files.
fn temp_prefix(name: &str, pid: u32) -> String {
    format!(".{name}.scream-ice-{pid}-")
}

/// `name` in `dir`, written without a `./` when `dir` is the current
/// directory (so messages show the path the operator typed).
fn sibling(dir: &Path, name: &str) -> PathBuf {
    if dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    sibling(
        dir,
        &format!("{}{n}.tmp", temp_prefix(name, std::process::id())),
    )
}

/// Remove temporary files of `name` left by writers that were killed (no
/// process with their PID exists any more). Failures are ignored: a stray
/// temporary file is untidy, not harmful.
pub fn remove_stale_temps(fs: &dyn Fs, target: &Path) {
    let dir = dir_of(target);
    let name = file_name(target);
    let prefix = format!(".{name}.scream-ice-");
    let Ok(names) = fs.list_dir(Step::Cleanup, &dir) else {
        return;
    };
    for n in names {
        let Some(rest) = n.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id()
            && n.ends_with(".tmp")
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = fs.remove_file(Step::Cleanup, &sibling(&dir, &n));
        }
    }
}

/// `YYYYMMDDTHHMMSS.mmmZ` for `t` (UTC), sortable as text.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The backups of `target` of this `kind`, oldest first (by the timestamp
/// and counter in their names).
pub fn backups(fs: &dyn Fs, target: &Path, kind: &str) -> io::Result<Vec<PathBuf>> {
    let dir = dir_of(target);
    let prefix = format!("{}.", file_name(target));
    let suffix = format!(".{kind}{BACKUP_SUFFIX}");
    let mut found: Vec<(String, u32, String)> = fs
        .list_dir(Step::Backup, &dir)?
        .into_iter()
        .filter_map(|n| {
            let middle = n.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
            let (stamp, counter) = match middle.split_once('-') {
                Some((s, c)) => (s, c.parse().ok()?),
                None => (middle, 0),
            };
            (stamp.len() == 20 && stamp.ends_with('Z'))
                .then(|| (stamp.to_string(), counter, n.clone()))
        })
        .collect();
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, _, n)| sibling(&dir, &n))
        .collect())
}

/// Write `bytes` to a new temporary file in `dir` and fsync it; the file
/// is removed again if anything fails.
fn write_temp(
    fs: &dyn Fs,
    steps: (Step, Step),
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, WriteError> {
    let (write_step, sync_step) = steps;
    let tmp = temp_path(dir, name);
    let mut f = fs
        .create_new(write_step, &tmp, mode, owner)
        .map_err(|e| fail(write_step, &tmp, e))?;
    let r = f
        .write_all(bytes)
        .map_err(|e| fail(write_step, &tmp, e))
        .and_then(|()| f.sync_all().map_err(|e| fail(sync_step, &tmp, e)));
    drop(f);
    if let Err(e) = r {
        let _ = fs.remove_file(Step::Cleanup, &tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Copy the old target to a new backup name that no run ever reuses.
fn backup(
    fs: &dyn Fs,
    target: &Path,
    dir: &Path,
    name: &str,
    kind: &str,
    old: &[u8],
    meta: FileMeta,
) -> Result<PathBuf, WriteError> {
    let s = Step::Backup;
    let tmp = write_temp(fs, (s, s), dir, name, old, meta.mode, owner_of(meta))?;
    let stamp = timestamp(SystemTime::now());
    let mut linked = None;
    let mut last_err = None;
    for n in 0..1000u32 {
        let b = if n == 0 {
            sibling(dir, &format!("{name}.{stamp}.{kind}{BACKUP_SUFFIX}"))
        } else {
            sibling(dir, &format!("{name}.{stamp}-{n:03}.{kind}{BACKUP_SUFFIX}"))
        };
        match fs.hard_link(s, &tmp, &b) {
            Ok(()) => {
                linked = Some(b);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                last_err = Some(fail(s, &b, e));
                break;
            }
        }
    }
    let _ = fs.remove_file(Step::Cleanup, &tmp);
    let b = match (linked, last_err) {
        (Some(b), _) => b,
        (None, Some(e)) => return Err(e),
        (None, None) => {
            return Err(fail(
                s,
                target,
                io::Error::new(io::ErrorKind::AlreadyExists, "1000 backups in one second"),
            ));
        }
    };
    if let Err(e) = fs.sync_dir(s, dir) {
        let _ = fs.remove_file(Step::Cleanup, &b);
        return Err(fail(s, dir, e));
    }
    Ok(b)
}

/// How long [`replace`] waits for another writer in the same directory.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Lock `dir` for this writer, waiting up to [`LOCK_WAIT`]. (A lock can
/// also be held for a moment by a child process this one forked, until
/// the child's exec closes the inherited descriptor.)
fn lock_dir(dir: &Path) -> Result<File, WriteError> {
    let d = File::open(dir).map_err(|e| fail(Step::ReadTarget, dir, e))?;
    let start = std::time::Instant::now();
    loop {
        match d.try_lock() {
            Ok(()) => return Ok(d),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(fail(
                    Step::ReadTarget,
                    dir,
                    io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "another scream-ice migrate or rollback is writing in this directory",
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(fail(Step::ReadTarget, dir, e)),
        }
    }
}

/// Keep the owner only when it is not already ours (so an unprivileged
/// run never attempts a chown).
fn owner_of(meta: FileMeta) -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self").ok()?;
    (me.uid() != meta.uid || me.gid() != meta.gid).then_some((meta.uid, meta.gid))
}

/// Replace `r.target` with `r.text` by the steps of the module docs. When
/// the target already holds exactly `r.text`, nothing is written and
/// `Ok(None)` is returned.
pub fn replace(fs: &dyn Fs, r: &Replacement<'_>) -> Result<Option<Replaced>, WriteError> {
    let target = r.target;
    let dir = dir_of(target);
    let name = file_name(target);
    // One writer per directory at a time (an advisory lock on the
    // directory itself, released when this process ends, even by kill -9).
    let _lock = lock_dir(&dir)?;
    remove_stale_temps(fs, target);
    let meta = fs
        .stat(Step::ReadTarget, target)
        .map_err(|e| fail(Step::ReadTarget, target, e))?;
    let old = match meta {
        Some(_) => Some(
            fs.read(Step::ReadTarget, target, u64::MAX)
                .map_err(|e| fail(Step::ReadTarget, target, e))?,
        ),
        None => None,
    };
    if old.as_deref() == Some(r.text.as_bytes()) {
        return Ok(None);
    }
    let base_mode = meta.map_or(r.new_file_mode, |m| m.mode);
    let mode = if r.secret {
        base_mode & !0o077
    } else {
        base_mode
    };
    let owner = meta.and_then(owner_of);

    let backup = match (&old, meta) {
        (Some(old), Some(meta)) => Some(backup(fs, target, &dir, &name, r.backup_kind, old, meta)?),
        _ => None,
    };
    let undo_backup = |fs: &dyn Fs| {
        if let Some(b) = &backup {
            let _ = fs.remove_file(Step::Cleanup, b);
        }
    };

    let tmp = match write_temp(
        fs,
        (Step::TempWrite, Step::TempSync),
        &dir,
        &name,
        r.text.as_bytes(),
        mode,
        owner,
    ) {
        Ok(t) => t,
        Err(e) => {
            undo_backup(fs);
            return Err(e);
        }
    };
    let abandon = |fs: &dyn Fs, e: WriteError| {
        let _ = fs.remove_file(Step::Cleanup, &tmp);
        undo_backup(fs);
        e
    };

    let back = match fs.read(Step::Validate, &tmp, u64::MAX) {
        Ok(b) => b,
        Err(e) => return Err(abandon(fs, fail(Step::Validate, &tmp, e))),
    };
    let checked = match std::str::from_utf8(&back) {
        Err(_) => Err("the file read back is not UTF-8".to_string()),
        Ok(t) if t != r.text => Err("the file read back differs from what was written".to_string()),
        Ok(t) => (r.validate)(t),
    };
    if let Err(m) = checked {
        return Err(abandon(
            fs,
            fail(
                Step::Validate,
                &tmp,
                io::Error::new(io::ErrorKind::InvalidData, m),
            ),
        ));
    }

    if let Err(e) = fs.rename(Step::Rename, &tmp, target) {
        return Err(abandon(fs, fail(Step::Rename, target, e)));
    }
    if let Err(e) = fs.sync_dir(Step::DirSync, &dir) {
        // The new text is in place but its rename may not be durable:
        // put the old text back the same way.
        let mut err = fail(Step::DirSync, &dir, e);
        let restored = match &old {
            Some(old) => write_temp(
                fs,
                (Step::Cleanup, Step::Cleanup),
                &dir,
                &name,
                old,
                meta.map_or(mode, |m| m.mode),
                owner,
            )
            .and_then(|t| {
                fs.rename(Step::Cleanup, &t, target).map_err(|e| {
                    let _ = fs.remove_file(Step::Cleanup, &t);
                    fail(Step::Cleanup, target, e)
                })
            })
            .is_ok(),
            None => fs.remove_file(Step::Cleanup, target).is_ok(),
        };
        if restored && fs.sync_dir(Step::Cleanup, &dir).is_ok() {
            undo_backup(fs);
        } else {
            err.target_unknown = true;
            err.backup = backup;
        }
        return Err(err);
    }
    Ok(Some(Replaced { backup, mode }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_utc_and_sort_as_text() {
        let t = |s: u64, ms: u64| {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(s * 1000 + ms)
        };
        assert_eq!(timestamp(t(0, 0)), "19700101T000000.000Z");
        // 2000-02-29 (leap day of a century leap year) 12:34:56.789
        assert_eq!(timestamp(t(951_827_696, 789)), "20000229T123456.789Z");
        // 2026-12-02 14:11:05
        assert_eq!(timestamp(t(1_796_220_665, 5)), "20261202T141105.005Z");
        assert!(timestamp(t(1_796_220_665, 5)) < timestamp(t(1_796_220_666, 0)));
    }
}
