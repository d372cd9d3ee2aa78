//! The pinned state's paths under the pin root (`/sys/fs/bpf/floodgate/<layout>/…`), the bpffs
//! check and the lock that serialises every mutation.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use filter_common::LAYOUT_VERSION;

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Errors about the pin directory.
#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    /// The pin root is not on a bpffs.
    #[error("{path} is not on a BPF filesystem (mount one: mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs {
        /// The directory checked.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Pins of another layout version exist.
    #[error(
        "pinned state of layout {found} exists under {root} but this binary uses layout {ours}; \
         run `floodgate detach` with the binary that created it (or remove {root}/{found}) \
         and start again — its blocks cannot be read by this version"
    )]
    ForeignLayout {
        /// The pin root.
        root: PathBuf,
        /// The other layout's directory name.
        found: String,
        /// Ours.
        ours: &'static str,
    },
}

/// Paths of the pinned state.
#[derive(Clone, Debug)]
pub struct Pins {
    root: PathBuf,
}

/// An exclusive lock on the layout directory, released on drop.
#[derive(Debug)]
pub struct Lock {
    _dir: File,
}

impl Pins {
    /// Pins under `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The pin root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of this layout version.
    #[must_use]
    pub(crate) fn layout_dir(&self) -> PathBuf {
        self.root.join(LAYOUT_VERSION)
    }

    /// Directory of the pinned maps (pin file name = map name).
    #[must_use]
    pub(crate) fn maps_dir(&self) -> PathBuf {
        self.layout_dir().join("maps")
    }

    /// Path of one pinned map.
    #[must_use]
    pub(crate) fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// Path of the pinned program.
    #[must_use]
    pub fn program(&self) -> PathBuf {
        self.layout_dir().join("program")
    }

    /// Directory of the pinned XDP links, one per interface name.
    #[must_use]
    pub(crate) fn links_dir(&self) -> PathBuf {
        self.layout_dir().join("links")
    }

    /// Path of the pinned link on `iface`.
    #[must_use]
    pub fn link(&self, iface: &str) -> PathBuf {
        self.links_dir().join(iface)
    }

    /// True when a program is pinned (the filter is loaded).
    #[must_use]
    pub(crate) fn loaded(&self) -> bool {
        self.program().exists()
    }

    /// Interfaces with a pinned link.
    pub(crate) fn linked_interfaces(&self) -> Result<Vec<String>, PinsError> {
        let dir = self.links_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PinsError::Io {
                    op: "read",
                    path: dir,
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Fails unless the pin root's parent (or the root) lies on a bpffs, and refuses pins of
    /// another layout version.
    pub(crate) fn check(&self) -> Result<(), PinsError> {
        let probe = if self.root.exists() {
            self.root.clone()
        } else {
            self.root.parent().unwrap_or(&self.root).to_path_buf()
        };
        match is_bpffs(&probe) {
            Ok(true) => {}
            Ok(false) => return Err(PinsError::NotBpffs { path: probe }),
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                return Err(PinsError::NotBpffs { path: probe });
            }
            Err(source) => {
                return Err(PinsError::Io {
                    op: "stat",
                    path: probe,
                    source,
                });
            }
        }
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(PinsError::Io {
                    op: "read",
                    path: self.root.clone(),
                    source,
                });
            }
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != LAYOUT_VERSION {
                return Err(PinsError::ForeignLayout {
                    root: self.root.clone(),
                    found: name,
                    ours: LAYOUT_VERSION,
                });
            }
        }
        Ok(())
    }

    /// Creates the directories and takes the exclusive mutation lock (flock on the layout
    /// directory), waiting for a concurrent holder.
    pub fn lock(&self) -> Result<Lock, PinsError> {
        self.check()?;
        // Root only: the pins and the maps behind them are the filter's whole state.
        for dir in [
            self.root.clone(),
            self.layout_dir(),
            self.maps_dir(),
            self.links_dir(),
        ] {
            use std::os::unix::fs::DirBuilderExt as _;
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|source| PinsError::Io {
                        op: "create",
                        path: dir.clone(),
                        source,
                    })?;
            }
        }
        let dir = self.layout_dir();
        let file = File::open(&dir).map_err(|source| PinsError::Io {
            op: "open",
            path: dir.clone(),
            source,
        })?;
        // SAFETY: flock on a file descriptor we own; it stays open as long as the Lock lives.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(PinsError::Io {
                op: "lock",
                path: dir,
                source: io::Error::last_os_error(),
            });
        }
        Ok(Lock { _dir: file })
    }
}

fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: all-zero is a valid statfs to be overwritten.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a writable statfs.
    if unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type == BPF_FS_MAGIC)
}
