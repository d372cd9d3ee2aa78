//! The connection sensor: how many established TCP connections each source holds open to the
//! protected ports right now, read from the kernel's socket tables (`/proc/net/tcp`,
//! `/proc/net/tcp6`, in the daemon's network namespace) once a second. A connection is
//! established only after a completed handshake, so a spoofed source holds none. This sees
//! what neither request rates nor the proxy's log show: connections held open without ever
//! completing a request (slowloris).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// `st` of an established socket in the tables.
const ESTABLISHED: &str = "01";

/// Established connections per source to any of `ports` (local ports), both families.
#[must_use]
pub(crate) fn count(ports: &[u16]) -> HashMap<IpAddr, u32> {
    let mut counts = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // A table that cannot be read (no IPv6) counts nothing.
        if let Ok(text) = std::fs::read_to_string(table) {
            count_table(&text, ports, &mut counts);
        }
    }
    counts
}

/// Adds one table's established connections to `ports` to `counts`.
pub(crate) fn count_table(text: &str, ports: &[u16], counts: &mut HashMap<IpAddr, u32>) {
    for line in text.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if state != ESTABLISHED {
            continue;
        }
        let Some((_, local_port)) = endpoint(local) else {
            continue;
        };
        if !ports.contains(&local_port) {
            continue;
        }
        if let Some((ip, _)) = endpoint(remote) {
            *counts.entry(crate::target::canonical(ip)).or_default() += 1;
        }
    }
}

/// `0100007F:0050` (IPv4) or 32 hex digits `:PORT` (IPv6): the address is written as the
/// kernel's 32-bit words in host (little-endian) order.
fn endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::swap_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_connections_to_protected_ports_are_counted_per_source() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 010012C6:0050 020012C6:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1\n\
           1: 010012C6:0050 020012C6:9C41 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1\n\
           2: 010012C6:0050 090012C6:9C42 06 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1\n\
           3: 010012C6:01BB 090012C6:9C43 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1\n\
           4: 010012C6:0016 090012C6:9C44 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1\n\
           5: garbage\n";
        let v6 = "  sl  local_address                         remote_address                        st\n\
           0: 02000120000000000000000001000000:0050 02000120000000000000000009000000:A000 01 x\n\
           1: 0000000000000000FFFF0000010012C6:0050 0000000000000000FFFF0000020012C6:A001 01 x\n";
        let mut counts = HashMap::new();
        count_table(v4, &[80, 443], &mut counts);
        count_table(v6, &[80, 443], &mut counts);
        let at = |a: &str| counts.get(&a.parse::<IpAddr>().unwrap()).copied();
        // 198.18.0.2: two on :80 plus one IPv4-mapped on :80.
        assert_eq!(at("198.18.0.2"), Some(3));
        // 198.18.0.9: one on :443; TIME_WAIT and :22 do not count.
        assert_eq!(at("198.18.0.9"), Some(1));
        assert_eq!(at("2001:2::9"), Some(1));
        assert_eq!(counts.len(), 3);
    }
}
