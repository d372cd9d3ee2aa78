//! Typed access to the pinned maps: reading block entries, the allow list, counters and
//! kernel-side settings. Block entries are written only by `enforce::writer`.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use aya::maps::{
    Array, HashMap, Map, MapData, MapError, PerCpuArray,
    lpm_trie::{Key, LpmTrie},
};
use filter_common::{
    Addr, AllowEntry, BlockEntry, MAX_SHADOWED_PREFIXES, REASON_TEXT_LEN, capacity, config,
    counter, maps, port_kind,
};

use super::pins::Pins;
use crate::{
    clock::monotonic_ns,
    target::{Target, ip_key},
};

/// Errors of map operations.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    /// Nothing is loaded under the pin root.
    #[error(
        "Floodgate is not loaded (nothing pinned at {0}); start it with `floodgate run --iface IF`"
    )]
    NotLoaded(PathBuf),
    /// A map operation failed.
    #[error("{op} on map {map}: {source}")]
    Map {
        /// What was attempted.
        op: &'static str,
        /// Which map.
        map: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The pin lock could not be taken.
    #[error("pin lock: {0}")]
    Lock(String),
    /// The map is full.
    #[error("map {map} is full ({capacity} entries); remove entries or raise the capacity")]
    Full {
        /// Which map.
        map: &'static str,
        /// Its capacity.
        capacity: u32,
    },
}

/// A block entry as listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BlockView {
    /// Address or prefix.
    pub target: Target,
    /// Rule name or operator text.
    pub reason: String,
    /// One of "manual", "rule", "aggregate", "crowdsec", "fleet".
    pub kind: &'static str,
    /// The fleet host that decided a "fleet" entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_host: Option<String>,
    /// Packets matched while in force.
    pub hits: u64,
    /// Seconds left; `None` = never expires.
    pub ttl_remaining_secs: Option<u64>,
    /// True when the entry has expired (it no longer drops; the sweep removes it).
    pub expired: bool,
    /// `CLOCK_MONOTONIC` ns at which the entry was written.
    pub added_ns: u64,
}

/// An allow entry as listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AllowView {
    /// Address or prefix.
    pub target: Target,
}

/// The pinned maps, opened.
pub struct Maps {
    exact: HashMap<MapData, Addr, BlockEntry>,
    prefix: LpmTrie<MapData, Addr, BlockEntry>,
    allow: LpmTrie<MapData, Addr, AllowEntry>,
    counters: PerCpuArray<MapData, u64>,
    config: Array<MapData, u32>,
    ports: HashMap<MapData, u16, u32>,
}

pub(crate) fn open_map<T: TryFrom<Map, Error = MapError>>(
    pins: &Pins,
    name: &'static str,
) -> Result<T, MapsError> {
    let map_err = |op, source| MapsError::Map {
        op,
        map: name,
        source,
    };
    let data = MapData::from_pin(pins.map(name)).map_err(|e| map_err("open pin", e))?;
    let map = Map::from_map_data(data).map_err(|e| map_err("open", e))?;
    T::try_from(map).map_err(|e| map_err("open typed", e))
}

pub(crate) fn map_err(op: &'static str, map: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Map { op, map, source }
}

/// True when a map error means "no such key".
pub(crate) fn is_missing(err: &MapError) -> bool {
    matches!(err, MapError::KeyNotFound | MapError::ElementNotFound)
}

pub(crate) fn write_err(map: &'static str, cap: u32) -> impl FnOnce(MapError) -> MapsError {
    move |source| match &source {
        MapError::SyscallError(e)
            if e.io_error.raw_os_error() == Some(libc::E2BIG)
                || e.io_error.raw_os_error() == Some(libc::ENOSPC) =>
        {
            MapsError::Full { map, capacity: cap }
        }
        _ => MapsError::Map {
            op: "insert",
            map,
            source,
        },
    }
}

/// Encodes free text into the fixed reason field (truncated on a char boundary).
#[must_use]
pub(crate) fn reason_text(text: &str) -> [u8; REASON_TEXT_LEN] {
    let mut out = [0u8; REASON_TEXT_LEN];
    let mut end = text.len().min(REASON_TEXT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&text.as_bytes()[..end]);
    out
}

/// Decodes the reason field.
#[must_use]
pub(crate) fn reason_string(raw: &[u8; REASON_TEXT_LEN]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Builds a block entry that expires `ttl` from now (`None`: never).
#[must_use]
pub fn block_entry(ttl: Option<Duration>, reason_code: u16, reason: &str) -> BlockEntry {
    let now = monotonic_ns();
    let expires_ns = ttl.map_or(0, |ttl| {
        now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
    });
    BlockEntry {
        expires_ns,
        added_ns: now,
        hits: 0,
        reason_code,
        key_len: 128,
        _pad: [0; 4],
        reason_text: reason_text(reason),
    }
}

fn view(target: Target, entry: &BlockEntry, now: u64) -> BlockView {
    let kind = match entry.reason_code {
        filter_common::reason::RULE => "rule",
        filter_common::reason::AGGREGATE => "aggregate",
        filter_common::reason::CROWDSEC => "crowdsec",
        filter_common::reason::FLEET => "fleet",
        _ => "manual",
    };
    let text = reason_string(&entry.reason_text);
    let (origin_host, reason) = if entry.reason_code == filter_common::reason::FLEET {
        let (host, reason) = crate::sources::fleet::value::split_map_reason(&text);
        (host.map(str::to_owned), reason.to_owned())
    } else {
        (None, text)
    };
    BlockView {
        target,
        reason,
        kind,
        origin_host,
        hits: entry.hits,
        ttl_remaining_secs: (entry.expires_ns != 0)
            .then(|| entry.expires_ns.saturating_sub(now).div_ceil(1_000_000_000)),
        expired: !entry.in_force(now),
        added_ns: entry.added_ns,
    }
}

impl Maps {
    /// Opens the pinned maps.
    pub fn open(pins: &Pins) -> Result<Self, MapsError> {
        if !pins.loaded() {
            return Err(MapsError::NotLoaded(pins.layout_dir()));
        }
        Ok(Self {
            exact: open_map(pins, maps::BLOCK_EXACT)?,
            prefix: open_map(pins, maps::BLOCK_PREFIX)?,
            allow: open_map(pins, maps::ALLOW)?,
            counters: open_map(pins, maps::COUNTERS)?,
            config: open_map(pins, maps::CONFIG)?,
            ports: open_map(pins, maps::PORTS)?,
        })
    }

    /// The block entry stored for exactly this target.
    pub fn block_entry(&self, target: Target) -> Result<Option<BlockEntry>, MapsError> {
        let got = if target.is_host() {
            self.exact.get(&target.key(), 0)
        } else {
            self.prefix
                .get(&Key::new(target.key_len(), target.key()), 0)
        };
        match got {
            Ok(entry) => Ok(Some(entry)),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(map_err(
                "lookup",
                if target.is_host() {
                    maps::BLOCK_EXACT
                } else {
                    maps::BLOCK_PREFIX
                },
            )(err)),
        }
    }

    /// Every block entry, exact first then prefixes.
    pub fn blocks(&self) -> Result<Vec<BlockView>, MapsError> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        for item in self.exact.iter() {
            let (key, entry) = item.map_err(map_err("iterate", maps::BLOCK_EXACT))?;
            out.push(view(Target::from_key(key, 128), &entry, now));
        }
        for item in self.prefix.iter() {
            let (key, entry) = item.map_err(map_err("iterate", maps::BLOCK_PREFIX))?;
            out.push(view(
                Target::from_key(key.data(), key.prefix_len()),
                &entry,
                now,
            ));
        }
        Ok(out)
    }

    /// The block entry that decides `ip`'s fate, as the program finds it: the exact entry if in
    /// force, else the longest prefix in force (looking past at most
    /// [`MAX_SHADOWED_PREFIXES`] expired longer ones), else the expired entry that matched.
    pub(crate) fn covering_block(&self, ip: IpAddr) -> Result<Option<BlockView>, MapsError> {
        let now = monotonic_ns();
        let host = Target::host(ip);
        let exact = self.block_entry(host)?.map(|e| view(host, &e, now));
        if let Some(b) = exact.as_ref().filter(|b| !b.expired) {
            return Ok(Some(b.clone()));
        }
        let mut prefixes: Vec<BlockView> = self
            .blocks()?
            .into_iter()
            .filter(|b| !b.target.is_host() && b.target.contains(ip))
            .collect();
        prefixes.sort_by_key(|b| std::cmp::Reverse(b.target.len));
        let in_force = prefixes
            .iter()
            .take(MAX_SHADOWED_PREFIXES)
            .position(|b| !b.expired);
        Ok(match in_force {
            Some(i) if prefixes[..i].iter().all(|b| b.expired) => Some(prefixes[i].clone()),
            _ => exact.or_else(|| prefixes.into_iter().next()),
        })
    }

    /// Adds an allow entry.
    pub fn allow(&mut self, target: Target) -> Result<(), MapsError> {
        let key = Key::new(target.key_len(), target.key());
        self.allow
            .insert(
                &key,
                &AllowEntry {
                    added_ns: monotonic_ns(),
                },
                0,
            )
            .map_err(write_err(maps::ALLOW, capacity::ALLOW))
    }

    /// Removes an allow entry; false if there was none.
    pub(crate) fn disallow(&mut self, target: Target) -> Result<bool, MapsError> {
        match self.allow.remove(&Key::new(target.key_len(), target.key())) {
            Ok(()) => Ok(true),
            Err(err) if is_missing(&err) => Ok(false),
            Err(err) => Err(map_err("remove", maps::ALLOW)(err)),
        }
    }

    /// Every allow entry.
    pub fn allowed(&self) -> Result<Vec<AllowView>, MapsError> {
        self.allow
            .keys()
            .map(|key| {
                key.map(|k| AllowView {
                    target: Target::from_key(k.data(), k.prefix_len()),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(map_err("iterate", maps::ALLOW))
    }

    /// True when `ip` is covered by the allow list.
    pub(crate) fn is_allowed(&self, ip: IpAddr) -> Result<bool, MapsError> {
        match self.allow.get(&Key::new(128, ip_key(ip)), 0) {
            Ok(_) => Ok(true),
            Err(err) if is_missing(&err) => Ok(false),
            Err(err) => Err(map_err("lookup", maps::ALLOW)(err)),
        }
    }

    /// Counters summed over CPUs, indexed by [`counter`].
    pub fn counters(&self) -> Result<[u64; counter::COUNT as usize], MapsError> {
        let mut out = [0u64; counter::COUNT as usize];
        for (index, slot) in (0..counter::COUNT).zip(out.iter_mut()) {
            let values = self
                .counters
                .get(&index, 0)
                .map_err(map_err("read", maps::COUNTERS))?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }

    /// Reads a kernel-side setting.
    pub(crate) fn setting(&self, index: u32) -> Result<u32, MapsError> {
        self.config
            .get(&index, 0)
            .map_err(map_err("read", maps::CONFIG))
    }

    /// Writes a kernel-side setting.
    pub fn set_setting(&mut self, index: u32, value: u32) -> Result<(), MapsError> {
        self.config
            .set(index, &value, 0)
            .map_err(map_err("write", maps::CONFIG))
    }

    /// True in monitor mode.
    pub(crate) fn monitor(&self) -> Result<bool, MapsError> {
        Ok(self.setting(config::MONITOR)? != 0)
    }

    /// The protected ports of one kind ([`filter_common::port_kind`]), sorted.
    pub(crate) fn ports(&self, kind: u32) -> Result<Vec<u16>, MapsError> {
        let mut ports = Vec::new();
        for item in self.ports.iter() {
            let (port, flags) = item.map_err(map_err("iterate", maps::PORTS))?;
            if flags & kind != 0 {
                ports.push(port);
            }
        }
        ports.sort_unstable();
        Ok(ports)
    }

    /// Replaces the protected ports: plaintext HTTP ports and TLS ports (a port may be both).
    pub fn set_ports(&mut self, http: &[u16], tls: &[u16]) -> Result<(), MapsError> {
        let flags = |port: u16| {
            let mut f = 0;
            if http.contains(&port) {
                f |= port_kind::HTTP;
            }
            if tls.contains(&port) {
                f |= port_kind::TLS;
            }
            f
        };
        let existing: Vec<u16> = self
            .ports
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("iterate", maps::PORTS))?;
        for port in existing {
            if flags(port) == 0 {
                self.ports
                    .remove(&port)
                    .map_err(map_err("remove", maps::PORTS))?;
            }
        }
        for port in http.iter().chain(tls) {
            self.ports
                .insert(port, &flags(*port), 0)
                .map_err(write_err(maps::PORTS, capacity::PORTS))?;
        }
        Ok(())
    }

    /// Number of exact and prefix block entries (walks both maps: for one-shot commands).
    pub(crate) fn block_counts(&self) -> (usize, usize) {
        (self.exact.keys().count(), self.prefix.keys().count())
    }

    /// Number of allow entries.
    pub(crate) fn allow_count(&self) -> usize {
        self.allow.keys().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_text_round_trip_and_truncation() {
        assert_eq!(reason_string(&reason_text("api-flood")), "api-flood");
        let long = "é".repeat(40);
        let stored = reason_string(&reason_text(&long));
        assert_eq!(stored, "é".repeat(16));
    }

    #[test]
    fn block_entry_expiry() {
        let e = block_entry(
            Some(Duration::from_secs(60)),
            filter_common::reason::MANUAL,
            "x",
        );
        assert!(e.in_force(monotonic_ns()));
        assert!(!e.in_force(e.expires_ns));
        let forever = block_entry(None, filter_common::reason::MANUAL, "x");
        assert_eq!(forever.expires_ns, 0);
        assert!(forever.in_force(u64::MAX));
    }
}
