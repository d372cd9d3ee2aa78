//! Loading the XDP program and its maps into pins, re-using them after a restart, attaching
//! links per interface, checking the pinned layout, and detaching everything.

use std::path::PathBuf;

use aya::{
    EbpfLoader,
    maps::{MapData, MapType},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use aya_obj::programs::XdpAttachType;
use filter_common::{LAYOUT, MapKind, PROGRAM_NAME};

use super::pins::{Pins, PinsError};

/// Errors of loading, attaching and detaching.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Pin directory trouble.
    #[error(transparent)]
    Pins(#[from] PinsError),
    /// The object could not be loaded.
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program operation failed.
    #[error("{op}: {source}")]
    Program {
        /// What was attempted.
        op: String,
        /// Why it failed.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A link operation failed.
    #[error("{op} {path}: {source}")]
    Link {
        /// What was attempted.
        op: &'static str,
        /// The link pin.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A pinned map has a different shape than this binary expects.
    #[error(
        "pinned map {name} does not match this binary's layout ({detail}); the pins under {root} \
         were made by another build: run `floodgate detach` and start again"
    )]
    LayoutMismatch {
        /// Map name.
        name: &'static str,
        /// What differs.
        detail: String,
        /// Pin root.
        root: PathBuf,
    },
    /// A map pin is missing or unreadable.
    #[error("pinned map {path}: {source}")]
    Map {
        /// The pin path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: aya::maps::MapError,
    },
    /// There is no interface of that name.
    #[error(
        "no interface named {iface} (see `ip link`; to wait for it to appear, set \
         filter.wait_for_interfaces = true)"
    )]
    UnknownInterface {
        /// The name given.
        iface: String,
    },
    /// The driver has no native XDP.
    #[error(
        "{iface} does not support XDP in driver mode; use generic mode: `--skb` or \
         filter.attach_mode = \"skb\""
    )]
    NoNativeXdp {
        /// The interface.
        iface: String,
    },
}

/// Whether an operation created new state or re-used pinned state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Adoption {
    /// Newly loaded or attached.
    Created,
    /// Re-used from the pins.
    Adopted,
    /// A different pinned program was replaced in place by this binary's.
    Upgraded,
}

/// The kernel map type of a layout entry.
#[must_use]
pub(crate) fn map_type(kind: MapKind) -> MapType {
    match kind {
        MapKind::Hash => MapType::Hash,
        MapKind::Array => MapType::Array,
        MapKind::PerCpuArray => MapType::PerCpuArray,
        MapKind::LpmTrie => MapType::LpmTrie,
        MapKind::RingBuf => MapType::RingBuf,
    }
}

/// Loads the program and its maps into the pins unless they are already there, and checks the
/// pinned layout. When a program is pinned but differs from this binary's (an upgrade with the
/// same map layout), the new one replaces it atomically in every pinned link
/// (`bpf_link_update`): no detach, no packet unfiltered, no block lost. The caller holds the
/// pin lock.
pub fn ensure_loaded(pins: &Pins) -> Result<Adoption, AttachError> {
    if pins.loaded() {
        check_layout(pins)?;
    }
    let program_err = |op: &str| {
        let op = op.to_owned();
        move |source| AttachError::Program {
            op: op.clone(),
            source,
        }
    };
    // Maps pinned by name are re-used from the pin directory, created and pinned otherwise.
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins.maps_dir())
        .load(super::ebpf::FILTER)?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| AttachError::Program {
            op: format!("find program {PROGRAM_NAME}"),
            source: aya::programs::ProgramError::NotLoaded,
        })?
        .try_into()
        .map_err(program_err("program type"))?;
    program
        .load()
        .map_err(program_err("verify and load XDP program"))?;
    let pin_err = |op: &'static str, path: PathBuf| {
        move |source: aya::pin::PinError| AttachError::Link {
            op,
            path,
            source: Box::new(source),
        }
    };
    if !pins.loaded() {
        program
            .pin(pins.program())
            .map_err(pin_err("pin program", pins.program()))?;
        check_layout(pins)?;
        return Ok(Adoption::Created);
    }
    let pinned = Xdp::from_pin(pins.program(), XdpAttachType::Interface)
        .map_err(program_err("open pinned program"))?;
    let pinned_tag = pinned
        .info()
        .map_err(program_err("pinned program info"))?
        .tag();
    let new_tag = program.info().map_err(program_err("program info"))?.tag();
    if pinned_tag == new_tag {
        return Ok(Adoption::Adopted);
    }
    // The new program may read a prefix hint the old one did not keep: fill it from the trie
    // before the program goes live (the caller holds the pin lock).
    let marked = super::prefix_hint::rebuild(pins).map_err(|e| AttachError::Link {
        op: "rebuild the prefix hint",
        path: pins.map(filter_common::maps::PREFIX_HINT),
        source: Box::new(e),
    })?;
    log::info!("prefix hint rebuilt: {marked} buckets marked");
    for iface in pins.linked_interfaces()? {
        let path = pins.link(&iface);
        let link = PinnedLink::from_pin(&path).map_err(|source| AttachError::Link {
            op: "open link",
            path: path.clone(),
            source: Box::new(source),
        })?;
        let link = XdpLink::try_from(FdLink::from(link)).map_err(|source| AttachError::Link {
            op: "open XDP link",
            path: path.clone(),
            source: Box::new(source),
        })?;
        // The link stays pinned: closing this handle later does not detach it.
        program
            .attach_to_link(link)
            .map_err(program_err(&format!("replace the program on {iface}")))?;
        log::info!("{iface}: program upgraded in place (tag {pinned_tag:016x} → {new_tag:016x})");
    }
    std::fs::remove_file(pins.program()).map_err(|source| PinsError::Io {
        op: "unpin old program",
        path: pins.program(),
        source,
    })?;
    program
        .pin(pins.program())
        .map_err(pin_err("pin program", pins.program()))?;
    Ok(Adoption::Upgraded)
}

/// Compares every pinned map with the layout this binary was built with.
pub(crate) fn check_layout(pins: &Pins) -> Result<(), AttachError> {
    for spec in LAYOUT {
        let path = pins.map(spec.name);
        let data = MapData::from_pin(&path).map_err(|source| AttachError::Map {
            path: path.clone(),
            source,
        })?;
        let info = data.info().map_err(|source| AttachError::Map {
            path: path.clone(),
            source,
        })?;
        let found_type = info.map_type().map_err(|source| AttachError::Map {
            path: path.clone(),
            source,
        })?;
        let found = (
            found_type,
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        );
        let (map_type, key, value, max) = (
            map_type(spec.kind),
            spec.key_size,
            spec.value_size,
            spec.max_entries,
        );
        let name = spec.name;
        if found != (map_type, key, value, max) {
            return Err(AttachError::LayoutMismatch {
                name,
                detail: format!(
                    "found {:?} key {} value {} entries {}, expected {map_type:?} key {key} value {value} entries {max}",
                    found.0, found.1, found.2, found.3
                ),
                root: pins.root().to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Attaches the pinned program to `iface` and pins the link, unless a link is already pinned
/// for it (then it is re-adopted: no second attach).
pub fn attach(pins: &Pins, iface: &str, mode: XdpMode) -> Result<Adoption, AttachError> {
    let link_path = pins.link(iface);
    if link_path.exists() {
        PinnedLink::from_pin(&link_path).map_err(|source| AttachError::Link {
            op: "re-adopt link",
            path: link_path.clone(),
            source: Box::new(source),
        })?;
        return Ok(Adoption::Adopted);
    }
    let mut program =
        Xdp::from_pin(pins.program(), XdpAttachType::Interface).map_err(|source| {
            AttachError::Program {
                op: "open pinned program".into(),
                source,
            }
        })?;
    let name = std::ffi::CString::new(iface).map_err(|_| AttachError::Program {
        op: format!("interface name {iface:?}"),
        source: aya::programs::ProgramError::UnknownInterface {
            name: std::ffi::CString::default(),
        },
    })?;
    let id = program.attach(&name, mode).map_err(|source| {
        let os_error = match &source {
            aya::programs::ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
            _ => None,
        };
        match (&source, os_error) {
            (aya::programs::ProgramError::UnknownInterface { .. }, _) | (_, Some(libc::ENODEV)) => {
                AttachError::UnknownInterface {
                    iface: iface.to_owned(),
                }
            }
            (_, Some(libc::EOPNOTSUPP)) if mode == XdpMode::Driver => AttachError::NoNativeXdp {
                iface: iface.to_owned(),
            },
            _ => AttachError::Program {
                op: format!("attach XDP ({mode:?} mode) to {iface}"),
                source,
            },
        }
    })?;
    let link = program
        .take_link(id)
        .map_err(|source| AttachError::Program {
            op: "take link".into(),
            source,
        })?;
    let fd_link = FdLink::try_from(link).map_err(|source| AttachError::Link {
        op: "convert link",
        path: link_path.clone(),
        source: Box::new(source),
    })?;
    fd_link
        .pin(&link_path)
        .map_err(|source| AttachError::Link {
            op: "pin link",
            path: link_path.clone(),
            source: Box::new(source),
        })?;
    Ok(Adoption::Created)
}

/// Removes the pinned link of `iface` (the program detaches from it).
pub fn detach_interface(pins: &Pins, iface: &str) -> Result<(), AttachError> {
    let link_path = pins.link(iface);
    let link = PinnedLink::from_pin(&link_path).map_err(|source| AttachError::Link {
        op: "open link",
        path: link_path.clone(),
        source: Box::new(source),
    })?;
    let fd_link = link.unpin().map_err(|source| AttachError::Link {
        op: "unpin link",
        path: link_path.clone(),
        source: Box::new(source),
    })?;
    drop(fd_link);
    Ok(())
}

/// Detaches every link and removes every pin of this layout. Returns the interfaces detached.
pub fn detach_all(pins: &Pins) -> Result<Vec<String>, AttachError> {
    let ifaces = pins.linked_interfaces()?;
    for iface in &ifaces {
        detach_interface(pins, iface)?;
    }
    let dir = pins.layout_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| PinsError::Io {
            op: "remove",
            path: dir.clone(),
            source,
        })?;
    }
    // The root is ours; leave nothing behind if it is now empty.
    let _ = std::fs::remove_dir(pins.root());
    Ok(ifaces)
}

/// Parses an attach mode name.
#[must_use]
pub(crate) fn mode(skb: bool) -> XdpMode {
    if skb { XdpMode::Skb } else { XdpMode::Driver }
}

/// The index of an interface by name; `None` when there is no such interface now.
#[must_use]
pub(crate) fn interface_index(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: a valid NUL-terminated name; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The `bpf(2)` syscall with `attr`.
///
/// # Safety
/// `attr` must be the attribute struct `cmd` expects, and every pointer in it valid for what
/// the kernel reads or writes through it during the call.
unsafe fn bpf<T>(cmd: aya_obj::generated::bpf_cmd, attr: &T) -> std::io::Result<i64> {
    // SAFETY: the caller upholds the contract above; the size is `attr`'s own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_ref(attr),
            size_of::<T>() as libc::c_long,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The interface index the pinned link of `iface` is attached to, as the kernel says now:
/// 0 when the interface it was attached to is gone (the kernel detaches the link then).
pub(crate) fn link_ifindex(pins: &Pins, iface: &str) -> std::io::Result<u32> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let path = std::ffi::CString::new(pins.link(iface).as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: BPF_OBJ_GET reads a NUL-terminated path through `get`, which outlives the call.
    let fd = unsafe { bpf(aya_obj::generated::bpf_cmd::BPF_OBJ_GET, &get)? };
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: all-zero is a valid bpf_link_info (plain integers and unions of them).
    let mut info: aya_obj::generated::bpf_link_info = unsafe { std::mem::zeroed() };
    let request = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<aya_obj::generated::bpf_link_info>() as u32,
        info: (&raw mut info) as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`, which lives on this stack
    // frame until the call returns.
    unsafe {
        bpf(
            aya_obj::generated::bpf_cmd::BPF_OBJ_GET_INFO_BY_FD,
            &request,
        )?
    };
    // SAFETY: for an XDP link the kernel fills the `xdp` member; a detached one reads 0.
    Ok(unsafe { info.__bindgen_anon_1.xdp.ifindex })
}

/// True when the pinned link of `iface` is attached to a device now. The kernel detaches a
/// link when its device goes away (the link then reports ifindex 0), so this holds until the
/// interface is deleted, whatever network namespace the caller is in.
#[must_use]
pub(crate) fn is_attached(pins: &Pins, iface: &str) -> bool {
    link_ifindex(pins, iface).is_ok_and(|at| at != 0)
}

/// Attaches again to an interface that came back: removes the stale link pin (its interface
/// is gone, so the kernel already detached it) and attaches a new link.
pub(crate) fn reattach(pins: &Pins, iface: &str, mode: XdpMode) -> Result<Adoption, AttachError> {
    let link_path = pins.link(iface);
    if link_path.exists() {
        std::fs::remove_file(&link_path).map_err(|source| PinsError::Io {
            op: "remove stale link",
            path: link_path.clone(),
            source,
        })?;
    }
    attach(pins, iface, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract between the embedded object and this binary, checked without root: every
    /// map of filter-common's layout exists in the object with its type, sizes and capacity,
    /// and the object has no map the layout does not know.
    #[test]
    fn the_embedded_object_defines_exactly_the_shared_layout() {
        let object = aya_obj::Object::parse(super::super::ebpf::FILTER).expect("parse the object");
        for spec in LAYOUT {
            let map = object
                .maps
                .get(spec.name)
                .unwrap_or_else(|| panic!("map {} missing from the object", spec.name));
            let kernel_type = map_type(spec.kind) as u32;
            assert_eq!(map.map_type(), kernel_type, "{}: type", spec.name);
            assert_eq!(map.key_size(), spec.key_size, "{}: key size", spec.name);
            assert_eq!(
                map.value_size(),
                spec.value_size,
                "{}: value size",
                spec.name
            );
            assert_eq!(
                map.max_entries(),
                spec.max_entries,
                "{}: max_entries",
                spec.name
            );
        }
        let mut extra: Vec<&String> = object
            .maps
            .keys()
            .filter(|name| !name.starts_with('.') && LAYOUT.iter().all(|s| s.name != *name))
            .collect();
        extra.sort();
        assert!(extra.is_empty(), "maps outside the layout: {extra:?}");
        assert!(
            object.programs.contains_key(PROGRAM_NAME),
            "program {PROGRAM_NAME} missing"
        );
    }
}
