//! xdp-filter (Debian's xdp-tools): the XDP deny list an operator would pick instead of
//! Floodgate. Loaded in native mode with its default features and policy (allow by default,
//! listed sources dropped). Its maps are per-CPU hashes of 10,000 entries (`filter_ipv4`), so
//! it can deny at most that many sources; [`XdpFilter::deny`] fills the map with the flooding
//! sources first and reports how many it holds.

use std::{net::Ipv4Addr, path::Path};

use aya::maps::{Map, MapData, PerCpuHashMap, PerCpuValues};
use floodgate_tests::net::NetNs;

/// Where xdp-filter pins its maps (fixed by the tool).
const PIN_DIR: &str = "/sys/fs/bpf/xdp-filter";

/// xdp-filter loaded on one interface of a namespace; unloaded on drop.
pub struct XdpFilter<'a> {
    ns: &'a NetNs,
    iface: String,
}

impl<'a> XdpFilter<'a> {
    /// `xdp-filter load -m native IFACE` inside `ns`.
    #[must_use]
    pub fn load(ns: &'a NetNs, iface: &str) -> Self {
        assert!(
            !Path::new(PIN_DIR).exists(),
            "{PIN_DIR} exists: another xdp-filter is loaded on this host; the bench needs its own"
        );
        ns.run(&["xdp-filter", "load", "-m", "native", iface]);
        Self {
            ns,
            iface: iface.to_owned(),
        }
    }

    /// Denies `sources` (as source addresses), then fills the map up to its capacity with
    /// addresses from 10.0.0.0/8 so that it is as full as Floodgate's. Returns (sources denied,
    /// entries held, capacity).
    #[must_use]
    pub fn deny(&self, sources: &[Ipv4Addr]) -> (usize, u32, u32) {
        let first = *sources.first().expect("at least one source");
        // The tool writes the first entry: its value is copied to the others, so the bench
        // never guesses xdp-filter's value layout.
        self.ns
            .run(&["xdp-filter", "ip", "-m", "src", &first.to_string()]);
        let data = MapData::from_pin(Path::new(PIN_DIR).join("filter_ipv4"))
            .expect("open xdp-filter's filter_ipv4 pin");
        let capacity = data.info().expect("map info").max_entries();
        let mut map: PerCpuHashMap<MapData, u32, u64> =
            PerCpuHashMap::try_from(Map::PerCpuHashMap(data)).expect("a per-CPU hash");
        let key = |ip: Ipv4Addr| u32::from_ne_bytes(ip.octets());
        let value = map.get(&key(first), 0).expect("the tool's entry");
        let values = || {
            PerCpuValues::try_from(value.iter().copied().collect::<Vec<u64>>())
                .expect("per-CPU values")
        };
        let mut held = 1u32;
        let mut denied = 1usize;
        for ip in &sources[1..] {
            if held >= capacity {
                break;
            }
            map.insert(&key(*ip), values(), 0).expect("insert a source");
            held += 1;
            denied += 1;
        }
        let mut filler = 0x0a00_0000u32;
        while held < capacity {
            map.insert(&key(Ipv4Addr::from(filler)), values(), 0)
                .expect("insert a filler");
            held += 1;
            filler += 1;
        }
        (denied, held, capacity)
    }

    /// Packets its program dropped so far (`XDP_DROP` of `xdp-filter status`).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        let out = self
            .ns
            .cmd("xdp-filter")
            .arg("status")
            .output()
            .expect("xdp-filter status");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("XDP_DROP"))
                    .then(|| f.next()?.parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no XDP_DROP line in xdp-filter status: {text}"))
    }
}

impl Drop for XdpFilter<'_> {
    fn drop(&mut self) {
        let _ = self
            .ns
            .cmd("xdp-filter")
            .args(["unload", &self.iface])
            .status();
        // Its pins were ours alone (`load` refuses to share them): none may outlive the bench.
        let _ = std::fs::remove_dir_all(PIN_DIR);
        // libxdp's dispatcher directory, once empty (another user's pins keep it).
        let _ = std::fs::remove_dir("/sys/fs/bpf/xdp");
    }
}
