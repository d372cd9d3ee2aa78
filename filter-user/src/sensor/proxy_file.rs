//! The proxy's request feed as a file: nginx appends its request lines to a file on tmpfs
//! with a buffered `access_log` (one `write` per 64 KiB or per flush interval instead of one
//! datagram per request, which cost nginx half its throughput at saturation), and the daemon
//! reads the lines behind it and frees what it has read by punching holes
//! (`FALLOC_FL_PUNCH_HOLE`), so the file takes no more memory than the unread part however
//! long it runs.
//!
//! Trust: nginx's master opens its log files as root before its workers drop privileges, so
//! the file is written by root. The daemon only reads a regular file owned by root or by one
//! of `proxy.allowed_users`, writable by nobody else, in a directory writable by nobody
//! else; anything else is refused (logged, `floodgate_proxy_feed_up` 0) and read again only
//! once it is fixed, so a local user cannot get a third party blocked by writing lines.
//!
//! The file is followed across rotation: when the path names a new file (nginx reopened its
//! logs after a move), the rest of the old one is read first; a file cut shorter is read
//! from its start. At start the backlog written while the daemon was not running is skipped
//! (it is no evidence of a rate now) and freed.

use std::{
    fs::File,
    io,
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use super::proxy_format::MAX_DATAGRAM;

/// Bytes read per call at most, so that a burst cannot stall the loop.
const READ_MAX: usize = 4 << 20;
/// Punch the read part out once this much has been read since the last punch.
const PUNCH_EVERY: u64 = 1 << 20;

/// Why the feed file is not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FeedFileError {
    /// An OS call failed.
    #[error("proxy feed file {path}: {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was done.
        op: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Someone else could write the file or replace it.
    #[error(
        "proxy feed file {path}: refused: {problem} (it must be a regular file owned by root or \
         a proxy.allowed_users user, in a directory only root can write)"
    )]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// What one read produced besides its lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileBatch {
    /// Lines longer than [`MAX_DATAGRAM`], skipped.
    pub oversized: u64,
    /// Bytes still unread after this read.
    pub backlog: u64,
}

/// The followed file.
pub(crate) struct FeedFile {
    path: PathBuf,
    allowed_uids: Vec<u32>,
    file: Option<File>,
    ino: u64,
    /// Read position in `file`.
    offset: u64,
    /// Everything before this is punched out.
    punched: u64,
    /// The bytes of the last read; `lines` index into it.
    buf: Vec<u8>,
    lines: Vec<(usize, usize)>,
    splitter: LineSplitter,
    /// A file was opened once (the first one is read from its end, later ones from start).
    started: bool,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> FeedFileError + 'a {
    move |source| FeedFileError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

impl FeedFile {
    /// A feed that follows `path`, opened (and created, root's, 0644, when it does not exist)
    /// at its first [`Self::read`]; the lines already there are skipped.
    pub(crate) fn new(path: &Path, allowed_uids: &[u32]) -> Self {
        Self {
            path: path.to_owned(),
            allowed_uids: allowed_uids.to_vec(),
            file: None,
            ino: 0,
            offset: 0,
            punched: 0,
            buf: Vec::new(),
            lines: Vec::new(),
            splitter: LineSplitter::default(),
            started: false,
        }
    }

    #[must_use]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path (creating it when `create`) after checking who may write it: (file,
    /// inode, length).
    fn open_path(&self, create: bool) -> Result<(File, u64, u64), FeedFileError> {
        let path = &self.path;
        let file = std::fs::OpenOptions::new()
            .read(true)
            // Punching holes needs a descriptor open for writing.
            .write(true)
            .create(create)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(io_err(path, "open"))?;
        let meta = file.metadata().map_err(io_err(path, "fstat"))?;
        let untrusted = |problem: String| FeedFileError::Untrusted {
            path: path.clone(),
            problem,
        };
        if !meta.file_type().is_file() {
            return Err(untrusted("not a regular file".into()));
        }
        if meta.uid() != 0 && !self.allowed_uids.contains(&meta.uid()) {
            return Err(untrusted(format!("owned by uid {}", meta.uid())));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(untrusted(format!(
                "mode {:o} lets others write it",
                meta.mode() & 0o777
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        let dir_meta = std::fs::metadata(dir).map_err(io_err(path, "stat directory"))?;
        if dir_meta.uid() != 0 || dir_meta.mode() & 0o022 != 0 {
            return Err(untrusted(format!(
                "its directory {} is not root's alone",
                dir.display()
            )));
        }
        Ok((file, meta.ino(), meta.len()))
    }

    /// Reads what was appended since the last call (at most [`READ_MAX`] bytes); the complete
    /// lines are then in [`Self::lines`].
    pub(crate) fn read(&mut self) -> Result<FileBatch, FeedFileError> {
        self.buf.clear();
        self.lines.clear();
        let mut batch = FileBatch::default();
        self.follow()?;
        let Some(file) = &self.file else {
            return Ok(batch);
        };
        let len = file.metadata().map_err(io_err(&self.path, "fstat"))?.len();
        if len < self.offset {
            // Cut shorter (truncated by hand or by logrotate's copytruncate): start over.
            self.offset = 0;
            self.punched = 0;
            self.splitter = LineSplitter::default();
        }
        let want = usize::try_from(len - self.offset)
            .unwrap_or(READ_MAX)
            .min(READ_MAX);
        self.splitter.start(&mut self.buf);
        let carried = self.buf.len();
        self.buf.resize(carried + want, 0);
        let n = read_at(file, &mut self.buf[carried..], self.offset)
            .map_err(io_err(&self.path, "read"))?;
        self.buf.truncate(carried + n);
        self.offset += n as u64;
        batch.oversized = self.splitter.finish(&self.buf, &mut self.lines);
        batch.backlog = len.saturating_sub(self.offset);
        if self.offset - self.punched >= PUNCH_EVERY {
            self.punch();
        }
        Ok(batch)
    }

    /// The complete lines of the last read.
    pub(crate) fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.lines
            .iter()
            .map(|(start, len)| &self.buf[*start..*start + *len])
    }

    /// Opens the file the path names now when it is another one (after the rest of the old
    /// one has been read), or for the first time, or again after a refusal.
    fn follow(&mut self) -> Result<(), FeedFileError> {
        if !self.started {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(&self.path, "create directory"))?;
            }
            let (file, ino, len) = self.open_path(true)?;
            if len > 0 {
                log::info!(
                    "proxy feed file {}: skipping {len} bytes written while the daemon was not \
                     reading",
                    self.path.display()
                );
            }
            self.file = Some(file);
            self.ino = ino;
            self.offset = len;
            self.started = true;
            self.punch();
            return Ok(());
        }
        let now = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => meta.ino(),
            // Moved away and not created again yet: finish the old one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&self.path, "stat")(e)),
        };
        if self.file.is_some() && now == self.ino {
            return Ok(());
        }
        if let Some(old) = &self.file {
            let len = old.metadata().map_err(io_err(&self.path, "fstat"))?.len();
            if len > self.offset {
                return Ok(());
            }
        }
        self.file = None;
        let (file, ino, _) = self.open_path(false)?;
        self.file = Some(file);
        self.ino = ino;
        self.offset = 0;
        self.punched = 0;
        self.splitter = LineSplitter::default();
        Ok(())
    }

    /// Frees the read part of the file (whole pages before the read position).
    fn punch(&mut self) {
        let Some(file) = &self.file else { return };
        let end = self.offset & !4095;
        if end <= self.punched {
            return;
        }
        // SAFETY: fallocate on a descriptor this struct owns, with a range inside the file.
        let rc = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                self.punched as libc::off_t,
                (end - self.punched) as libc::off_t,
            )
        };
        if rc == 0 {
            self.punched = end;
        } else {
            log::warn!(
                "proxy feed file {}: could not free what was read ({}); put it on tmpfs",
                self.path.display(),
                io::Error::last_os_error()
            );
            // Do not try again for every read.
            self.punched = end;
        }
    }
}

/// Cuts a byte stream read in pieces into lines of at most [`MAX_DATAGRAM`] bytes: the
/// unfinished last line of a piece is carried to the next; an over-long line is counted and
/// skipped up to its newline; empty lines are skipped.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    skipping: bool,
}

impl LineSplitter {
    /// Starts a piece: `buf` is cleared and gets the carried partial line; append the new
    /// bytes to it, then call [`Self::finish`].
    pub fn start(&mut self, buf: &mut Vec<u8>) {
        buf.clear();
        buf.append(&mut self.partial);
    }

    /// Puts the spans (start, length) of the complete lines of `buf` into `lines` (cleared
    /// first) and keeps the unfinished tail; returns how many over-long lines were skipped.
    pub fn finish(&mut self, buf: &[u8], lines: &mut Vec<(usize, usize)>) -> u64 {
        lines.clear();
        let mut oversized = 0;
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..]) {
            let end = start + nl;
            if self.skipping {
                self.skipping = false;
            } else if end - start > MAX_DATAGRAM {
                oversized += 1;
            } else if end > start {
                lines.push((start, end - start));
            }
            start = end + 1;
        }
        let tail = &buf[start..];
        if self.skipping {
            return oversized;
        }
        if tail.len() > MAX_DATAGRAM {
            oversized += 1;
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(tail);
        }
        oversized
    }
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "fg-feed-file-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn read_lines(feed: &mut FeedFile) -> Vec<String> {
        feed.read().unwrap();
        feed.lines()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn follows_appends_partial_lines_rotation_and_truncation() {
        let dir = dir();
        let path = dir.join("requests.log");
        std::fs::write(&path, "old backlog\n").unwrap();
        let mut feed = FeedFile::new(&path, &[euid()]);
        assert!(read_lines(&mut feed).is_empty(), "the backlog is skipped");
        append(&path, "one\ntw");
        assert_eq!(read_lines(&mut feed), ["one"]);
        append(&path, "o\n\nthree\n");
        assert_eq!(read_lines(&mut feed), ["two", "three"]);
        // Rotation: the old file moved away, gets a last line, a new one appears.
        let moved = dir.join("requests.log.1");
        std::fs::rename(&path, &moved).unwrap();
        append(&moved, "last of old\n");
        std::fs::write(&path, "first of new\n").unwrap();
        std::fs::set_permissions(&path, std::fs::metadata(&moved).unwrap().permissions()).unwrap();
        assert_eq!(read_lines(&mut feed), ["last of old"]);
        assert_eq!(read_lines(&mut feed), ["first of new"]);
        // Truncation starts over.
        std::fs::write(&path, "").unwrap();
        append(&path, "after cut\n");
        assert_eq!(read_lines(&mut feed), ["after cut"]);
        // An over-long line is counted and skipped, the next one read.
        append(&path, &"x".repeat(MAX_DATAGRAM + 10));
        let batch = feed.read().unwrap();
        assert_eq!(batch.oversized, 1);
        append(&path, "xxx\nnext\n");
        assert_eq!(read_lines(&mut feed), ["next"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_others_may_write_is_refused_until_fixed() {
        let dir = dir();
        let path = dir.join("requests.log");
        std::fs::write(&path, "").unwrap();
        let mode = |m: u32| {
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, m);
            std::fs::set_permissions(&path, perms).unwrap();
        };
        mode(0o666);
        let mut feed = FeedFile::new(&path, &[euid()]);
        assert!(matches!(feed.read(), Err(FeedFileError::Untrusted { .. })));
        mode(0o644);
        append(&path, "x\n");
        assert!(
            read_lines(&mut feed).is_empty(),
            "read from the end once trusted"
        );
        append(&path, "y\n");
        assert_eq!(read_lines(&mut feed), ["y"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
