//! Names, layouts and constants shared by the Floodgate XDP program (`filter-ebpf`) and its
//! userspace (`filter-user`): one definition for both sides of every map.
//!
//! Every map value is `#[repr(C)]` with explicit padding and a size assertion; flags are
//! integers, never `bool`, enums or `Option`. The `user` feature adds `aya::Pod` impls.
//!
//! Addresses are stored as 16 bytes in network order: IPv6 as is, IPv4 as an IPv4-mapped IPv6
//! address (`::ffff:a.b.c.d`), so that one exact map and one LPM trie serve both families. An
//! IPv4 prefix `a.b.c.d/n` is the LPM key `::ffff:a.b.c.d/(96 + n)`.
#![no_std]

/// Version of the pinned map layout. It is part of the pin path, so a binary with a different
/// layout never misreads the maps of another: it finds no pins of its own and refuses to start
/// while foreign ones exist.
pub const LAYOUT_VERSION: &str = "v1";

/// Default root of everything Floodgate pins (bpffs). The layout version is a subdirectory.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/floodgate";

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "floodgate";

/// Map names (also the pin file names). At most 15 bytes: the kernel's object name limit.
pub mod maps {
    /// Allow list: LPM trie over [`crate::Addr`], value [`crate::AllowEntry`].
    pub const ALLOW: &str = "FG_ALLOW";
    /// Exact block map: hash, key [`crate::Addr`], value [`crate::BlockEntry`].
    pub const BLOCK_EXACT: &str = "FG_BLOCK_EXACT";
    /// Prefix block map: LPM trie over [`crate::Addr`], value [`crate::BlockEntry`].
    pub const BLOCK_PREFIX: &str = "FG_BLOCK_PREFIX";
    /// Per-CPU `u64` counters indexed by [`crate::counter`].
    pub const COUNTERS: &str = "FG_COUNTERS";
    /// `u32` settings indexed by [`crate::config`].
    pub const CONFIG: &str = "FG_CONFIG";
    /// Protected TCP ports: hash, key port (host order `u16`), value `u32` flags of
    /// [`crate::port_kind`].
    pub const PORTS: &str = "FG_PORTS";
    /// Ring buffer of [`crate::Sample`]s: sampled HTTP request starts and TLS ClientHellos.
    pub const SAMPLES: &str = "FG_SAMPLES";
    /// Array of `u32` flags, one per bucket of [`crate::prefix_hint`]: non-zero when a prefix
    /// entry may cover addresses of that bucket. The program skips the prefix trie otherwise.
    pub const PREFIX_HINT: &str = "FG_PREFIX_HINT";
}

/// Kinds of BPF map the layout uses (userspace maps them to the kernel's types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// `BPF_MAP_TYPE_HASH`.
    Hash,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PerCpuArray,
    /// `BPF_MAP_TYPE_LPM_TRIE`.
    LpmTrie,
    /// `BPF_MAP_TYPE_RINGBUF`.
    RingBuf,
}

/// The shape of one pinned map: what the object must define and the pins must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Map (and pin) name.
    pub name: &'static str,
    /// Map type.
    pub kind: MapKind,
    /// Key size in bytes (0 for a ring buffer).
    pub key_size: u32,
    /// Value size in bytes (0 for a ring buffer).
    pub value_size: u32,
    /// Capacity (bytes for a ring buffer).
    pub max_entries: u32,
}

/// Every pinned map with its shape: the contract between the program and userspace, checked
/// against the object on the host (a unit test) and against the pins at start.
pub const LAYOUT: [MapSpec; 8] = {
    const LPM_KEY: u32 = 4 + core::mem::size_of::<Addr>() as u32;
    const ADDR: u32 = core::mem::size_of::<Addr>() as u32;
    const BLOCK: u32 = core::mem::size_of::<BlockEntry>() as u32;
    [
        MapSpec {
            name: maps::ALLOW,
            kind: MapKind::LpmTrie,
            key_size: LPM_KEY,
            value_size: core::mem::size_of::<AllowEntry>() as u32,
            max_entries: capacity::ALLOW,
        },
        MapSpec {
            name: maps::BLOCK_EXACT,
            kind: MapKind::Hash,
            key_size: ADDR,
            value_size: BLOCK,
            max_entries: capacity::BLOCK_EXACT,
        },
        MapSpec {
            name: maps::BLOCK_PREFIX,
            kind: MapKind::LpmTrie,
            key_size: LPM_KEY,
            value_size: BLOCK,
            max_entries: capacity::BLOCK_PREFIX,
        },
        MapSpec {
            name: maps::COUNTERS,
            kind: MapKind::PerCpuArray,
            key_size: 4,
            value_size: 8,
            max_entries: capacity::COUNTERS,
        },
        MapSpec {
            name: maps::CONFIG,
            kind: MapKind::Array,
            key_size: 4,
            value_size: 4,
            max_entries: capacity::CONFIG,
        },
        MapSpec {
            name: maps::PORTS,
            kind: MapKind::Hash,
            key_size: 2,
            value_size: 4,
            max_entries: capacity::PORTS,
        },
        MapSpec {
            name: maps::SAMPLES,
            kind: MapKind::RingBuf,
            key_size: 0,
            value_size: 0,
            max_entries: capacity::SAMPLES_BYTES,
        },
        MapSpec {
            name: maps::PREFIX_HINT,
            kind: MapKind::Array,
            key_size: 4,
            value_size: 4,
            max_entries: prefix_hint::BUCKETS,
        },
    ]
};

/// Buckets of the prefix hint: which addresses a prefix entry may cover, coarsely, so that the
/// program can skip the prefix trie (its costliest lookup) for the addresses no prefix covers.
/// IPv4: one bucket per /16. IPv6: one of 65,536 buckets by a hash of the /48 (the widest
/// prefix the daemon's guard allows). A prefix marks every bucket it overlaps (an IPv6 prefix
/// shorter than /48 marks them all). A marked bucket
/// only means "look in the trie": the hint can cost a lookup, never a verdict.
pub mod prefix_hint {
    use crate::{Addr, V4_MAPPED_PREFIX_LEN};

    /// IPv4 buckets (/16s).
    pub const V4_BUCKETS: u32 = 1 << 16;
    /// IPv6 buckets.
    pub const V6_BUCKETS: u32 = 1 << 16;
    /// All buckets: IPv4 first, then IPv6.
    pub const BUCKETS: u32 = V4_BUCKETS + V6_BUCKETS;

    /// True when the 16-byte address is IPv4-mapped.
    #[inline(always)]
    #[must_use]
    pub const fn is_v4(addr: &Addr) -> bool {
        addr[0] == 0
            && addr[1] == 0
            && addr[2] == 0
            && addr[3] == 0
            && addr[4] == 0
            && addr[5] == 0
            && addr[6] == 0
            && addr[7] == 0
            && addr[8] == 0
            && addr[9] == 0
            && addr[10] == 0xff
            && addr[11] == 0xff
    }

    /// The bucket of an address.
    #[inline(always)]
    #[must_use]
    pub const fn bucket(addr: &Addr) -> u32 {
        if is_v4(addr) {
            ((addr[12] as u32) << 8) | addr[13] as u32
        } else {
            let top =
                u64::from_be_bytes([0, 0, addr[0], addr[1], addr[2], addr[3], addr[4], addr[5]]);
            V4_BUCKETS + (top.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as u32
        }
    }

    /// The buckets a prefix overlaps, as a range of bucket indices: `(first, count)`.
    /// `key_len` is the prefix length in the 16-byte key space.
    #[must_use]
    pub const fn buckets_of(network: &Addr, key_len: u32) -> (u32, u32) {
        if is_v4(network) && key_len >= V4_MAPPED_PREFIX_LEN {
            let len = key_len - V4_MAPPED_PREFIX_LEN;
            if len >= 16 {
                (bucket(network), 1)
            } else {
                let count = 1u32 << (16 - len);
                (bucket(network) & !(count - 1), count)
            }
        } else if key_len >= 48 {
            (bucket(network), 1)
        } else {
            (V4_BUCKETS, V6_BUCKETS)
        }
    }
}

/// Flags of a protected port (the value of the ports map).
pub mod port_kind {
    /// Plaintext HTTP/1.x: request starts are counted and sampled.
    pub const HTTP: u32 = 1;
    /// TLS: ClientHello record starts are counted and sampled.
    pub const TLS: u32 = 2;
}

/// Map capacities.
pub mod capacity {
    /// Exact block entries (preallocated hash).
    pub const BLOCK_EXACT: u32 = 1 << 20;
    /// Prefix block entries (LPM trie).
    pub const BLOCK_PREFIX: u32 = 1 << 17;
    /// Allow list entries (LPM trie).
    pub const ALLOW: u32 = 1 << 16;
    /// Protected ports.
    pub const PORTS: u32 = 64;
    /// Ring buffer bytes (a power of two, a multiple of the page size).
    pub const SAMPLES_BYTES: u32 = 1 << 23;
    /// Slots of the counter array.
    pub const COUNTERS: u32 = 16;
    /// Slots of the config array.
    pub const CONFIG: u32 = 8;
}

/// Indices into the per-CPU counter array.
///
/// Every packet adds one to exactly one *outcome* counter ([`counter::OUTCOMES`]); the others
/// count events on top of an outcome.
pub mod counter {
    /// Passed: parsed, no entry matched (or only expired ones).
    pub const PASSED: u32 = 0;
    /// Dropped by the exact block map.
    pub const DROPPED_EXACT: u32 = 1;
    /// Dropped by the prefix block map.
    pub const DROPPED_PREFIX: u32 = 2;
    /// Monitor mode: a block entry matched, the packet was passed.
    pub const WOULD_DROP: u32 = 3;
    /// A block entry matched but the source is on the allow list: passed (the allow list wins).
    pub const ALLOWED: u32 = 4;
    /// IP packet the parser could not follow (truncated, unknown extension chain): passed.
    pub const NOT_PARSED: u32 = 5;
    /// Not IPv4 or IPv6 (ARP, LLDP, …): passed.
    pub const NON_IP: u32 = 6;
    /// A matching block entry had expired; the packet was passed (also counted as PASSED).
    pub const EXPIRED: u32 = 7;
    /// TCP segments to a protected port whose payload starts with an HTTP method token.
    pub const REQUEST_STARTS: u32 = 8;
    /// Request starts written to the ring buffer.
    pub const SAMPLES: u32 = 9;
    /// Request starts chosen for sampling but lost because the ring buffer was full.
    pub const SAMPLES_LOST: u32 = 10;
    /// Request starts chosen for sampling whose connection completed no handshake with this
    /// host (no established socket): never used as evidence.
    pub const SAMPLES_UNVERIFIED: u32 = 11;
    /// TCP segments to a protected TLS port that start a TLS ClientHello record.
    pub const TLS_HELLOS: u32 = 12;

    /// Number of counters in use.
    pub const COUNT: u32 = 13;
    /// The outcome counters: each packet adds to exactly one.
    pub const OUTCOMES: [u32; 7] = [
        PASSED,
        DROPPED_EXACT,
        DROPPED_PREFIX,
        WOULD_DROP,
        ALLOWED,
        NOT_PARSED,
        NON_IP,
    ];
    /// Stable names (metrics labels, `stats --json` keys), indexed by counter.
    pub const NAMES: [&str; COUNT as usize] = [
        "passed",
        "dropped_exact",
        "dropped_prefix",
        "would_drop",
        "allowed",
        "not_parsed",
        "non_ip",
        "expired",
        "request_starts",
        "samples",
        "samples_lost",
        "samples_unverified",
        "tls_hellos",
    ];
}

const _: () = assert!(counter::COUNT <= capacity::COUNTERS);

/// Indices into the `u32` config array.
pub mod config {
    /// Non-zero: monitor mode (count matches as would-drop, pass everything).
    pub const MONITOR: u32 = 0;
    /// Sample one request start in N (0 or 1: every one).
    pub const SAMPLE_EVERY: u32 = 1;
    /// Payload bytes copied into each sample (1..=[`crate::SAMPLE_PAYLOAD_MAX`]; 0: the max).
    pub const SAMPLE_BYTES: u32 = 2;
}

/// A 16-byte address in network order (IPv4 mapped into IPv6).
pub type Addr = [u8; 16];

/// Prefix length offset of IPv4 prefixes inside the IPv6-mapped key space.
pub const V4_MAPPED_PREFIX_LEN: u32 = 96;

/// Maps an IPv4 address (network order bytes) into the 16-byte key space.
#[must_use]
pub const fn v4_mapped(v4: [u8; 4]) -> Addr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// Reason codes of a block entry.
pub mod reason {
    /// Added by an operator (`floodgate block add`).
    pub const MANUAL: u16 = 1;
    /// Decided by a detection rule; the rule name is in the reason text.
    pub const RULE: u16 = 2;
    /// A prefix blocked because several of its addresses offended.
    pub const AGGREGATE: u16 = 3;
    /// A CrowdSec decision (LAPI stream); the scenario is in the reason text.
    pub const CROWDSEC: u16 = 4;
    /// A fleet peer's decision (NATS bucket); `HOST:REASON` is in the reason text.
    pub const FLEET: u16 = 5;
}

/// Expired prefix entries the program looks past (to shorter prefixes) before giving up.
pub const MAX_SHADOWED_PREFIXES: usize = 4;

/// Bytes of free text kept with a block entry (rule name or operator's reason), NUL padded.
pub const REASON_TEXT_LEN: usize = 32;

/// Value of both block maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// `CLOCK_MONOTONIC` ns after which the entry no longer drops; 0 = never expires.
    pub expires_ns: u64,
    /// `CLOCK_MONOTONIC` ns at which the entry was written.
    pub added_ns: u64,
    /// Packets that matched the entry while it was in force (dropped or would-drop).
    pub hits: u64,
    /// One of [`reason`].
    pub reason_code: u16,
    /// Prefix length of the entry's key in the 16-byte key space (128 for exact entries). The
    /// program uses it to look past an expired prefix to a shorter one still in force.
    pub key_len: u16,
    /// Reserved, zero.
    pub _pad: [u8; 4],
    /// Rule name or operator text, NUL padded.
    pub reason_text: [u8; REASON_TEXT_LEN],
}
const _: () = assert!(core::mem::size_of::<BlockEntry>() == 64);

impl BlockEntry {
    /// True when the entry still drops at `now_ns` (`CLOCK_MONOTONIC`).
    #[must_use]
    pub const fn in_force(&self, now_ns: u64) -> bool {
        self.expires_ns == 0 || now_ns < self.expires_ns
    }
}

/// Value of the allow list.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowEntry {
    /// `CLOCK_MONOTONIC` ns at which the entry was written.
    pub added_ns: u64,
}
const _: () = assert!(core::mem::size_of::<AllowEntry>() == 8);

/// Largest payload prefix a sample carries.
pub const SAMPLE_PAYLOAD_MAX: usize = 256;

/// `Sample::flags` bit: the addresses are IPv6 (else IPv4-mapped).
pub const SAMPLE_FLAG_V6: u8 = 1;
/// `Sample::flags` bit: the segment starts a TLS ClientHello (else an HTTP/1.x request start).
pub const SAMPLE_FLAG_TLS_HELLO: u8 = 2;

/// One sampled HTTP request start or TLS ClientHello, as written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// `bpf_ktime_get_ns()` when the segment was seen.
    pub ktime_ns: u64,
    /// Source address (16-byte form).
    pub saddr: Addr,
    /// Destination address (16-byte form).
    pub daddr: Addr,
    /// Source port, host order.
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// TCP payload length of the segment.
    pub payload_len: u16,
    /// Bytes of `payload` that are valid.
    pub captured_len: u16,
    /// TCP flags byte (FIN 0x01 … CWR 0x80).
    pub tcp_flags: u8,
    /// [`SAMPLE_FLAG_V6`], [`SAMPLE_FLAG_TLS_HELLO`].
    pub flags: u8,
    /// Reserved, zero.
    pub _pad: [u8; 2],
    /// The 1-in-N factor in force when this sample was taken: it stands for N request starts.
    pub sample_every: u32,
    /// First bytes of the TCP payload.
    pub payload: [u8; SAMPLE_PAYLOAD_MAX],
}
const _: () = assert!(core::mem::size_of::<Sample>() == 56 + SAMPLE_PAYLOAD_MAX);

/// HTTP/1.x method tokens (with their trailing space) that make a payload a request start.
pub const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// Bytes of payload the program reads to recognise a request start or a ClientHello.
pub const HEAD_LEN: usize = 8;

// Every method token must fit the head the program compares.
const _: () = {
    let mut i = 0;
    while i < HTTP_METHODS.len() {
        assert!(HTTP_METHODS[i].len() <= HEAD_LEN);
        i += 1;
    }
};

/// TLS record content type of a handshake record.
pub const TLS_RECORD_HANDSHAKE: u8 = 22;
/// TLS handshake message type of a ClientHello.
pub const TLS_CLIENT_HELLO: u8 = 1;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all three are `repr(C)` plain integer/byte-array structs with explicit padding
    // (checked by the size assertions above), so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::BlockEntry {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::AllowEntry {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::Sample {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapping_and_expiry() {
        assert_eq!(
            v4_mapped([198, 18, 0, 1])[10..],
            [0xff, 0xff, 198, 18, 0, 1]
        );
        let entry = BlockEntry {
            expires_ns: 100,
            added_ns: 0,
            hits: 0,
            reason_code: reason::MANUAL,
            key_len: 128,
            _pad: [0; 4],
            reason_text: [0; REASON_TEXT_LEN],
        };
        assert!(entry.in_force(99));
        assert!(
            !entry.in_force(100),
            "an entry stops dropping at its expiry"
        );
        assert!(
            BlockEntry {
                expires_ns: 0,
                ..entry
            }
            .in_force(u64::MAX),
            "0 never expires"
        );
        assert_eq!(counter::NAMES.len(), counter::COUNT as usize);
    }
}
