//! Operator-facing addresses and prefixes (`198.18.0.1`, `198.18.0.0/24`, `2001:2::/64`) and
//! their encoding into the shared 16-byte key space (IPv4 mapped into IPv6).

use std::{fmt, net::IpAddr, str::FromStr};

use filter_common::{Addr, V4_MAPPED_PREFIX_LEN, v4_mapped};

/// An address or a prefix, host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// Network address.
    pub ip: IpAddr,
    /// Prefix length in the address's own family (32 or 128 for a single address).
    pub len: u8,
}

/// Why a string is not a valid address or prefix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not an IPv4/IPv6 address.
    #[error("'{input}' is not an IPv4 or IPv6 address")]
    BadAddress {
        /// What was given.
        input: String,
    },
    /// The prefix length is not a number within the family's range.
    #[error("'{input}': prefix length must be 0..={max}")]
    BadLength {
        /// What was given.
        input: String,
        /// The family's maximum.
        max: u8,
    },
    /// Bits below the prefix length are set.
    #[error("'{input}' has host bits set; did you mean {suggestion}?")]
    HostBits {
        /// What was given.
        input: String,
        /// The same prefix with the host bits cleared.
        suggestion: Target,
    },
}

impl Target {
    /// A single address.
    #[must_use]
    pub fn host(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        Self {
            ip,
            len: max_len(ip),
        }
    }

    /// True when this is one address rather than a wider prefix.
    #[must_use]
    pub fn is_host(&self) -> bool {
        self.len == max_len(self.ip)
    }

    /// The 16-byte key of the network address.
    #[must_use]
    pub fn key(&self) -> Addr {
        ip_key(self.ip)
    }

    /// Prefix length in the 16-byte key space (IPv4: 96 + len).
    #[must_use]
    pub fn key_len(&self) -> u32 {
        match self.ip {
            IpAddr::V4(_) => V4_MAPPED_PREFIX_LEN + u32::from(self.len),
            IpAddr::V6(_) => u32::from(self.len),
        }
    }

    /// Decodes an LPM key back into a target.
    #[must_use]
    pub fn from_key(key: Addr, key_len: u32) -> Self {
        let ip = canonical(IpAddr::from(key));
        let len = match ip {
            IpAddr::V4(_) => key_len.saturating_sub(V4_MAPPED_PREFIX_LEN),
            IpAddr::V6(_) => key_len,
        };
        Self {
            ip,
            len: u8::try_from(len).unwrap_or(128),
        }
    }

    /// The prefix of `len` bits that contains `ip`.
    #[must_use]
    pub fn covering(ip: IpAddr, len: u8) -> Self {
        let ip = canonical(ip);
        let len = len.min(max_len(ip));
        Self {
            ip: mask(ip, len),
            len,
        }
    }

    /// True when `ip` lies inside this prefix.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.ip.is_ipv4() && mask(ip, self.len) == self.ip
    }
}

/// The 16-byte key of an address (IPv4 mapped).
#[must_use]
pub(crate) fn ip_key(ip: IpAddr) -> Addr {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// An IPv4-mapped IPv6 address is treated as the IPv4 address it carries.
#[must_use]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// The one rule "this length for IPv4 addresses, that one for IPv6" (rule, aggregation and
/// guard prefix lengths come in such pairs).
#[must_use]
pub(crate) fn for_family(ip: IpAddr, v4: u8, v6: u8) -> u8 {
    if canonical(ip).is_ipv4() { v4 } else { v6 }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = || TargetError::BadAddress {
            input: input.to_owned(),
        };
        let (addr, len) = match input.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (input, None),
        };
        let ip = canonical(addr.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let max = max_len(ip);
        let len = match len {
            None => max,
            Some(len) => match len.parse::<u8>() {
                Ok(len) if len <= max => len,
                _ => {
                    return Err(TargetError::BadLength {
                        input: input.to_owned(),
                        max,
                    });
                }
            },
        };
        let target = Self { ip, len };
        let masked = Self::covering(ip, len);
        if masked != target {
            return Err(TargetError::HostBits {
                input: input.to_owned(),
                suggestion: masked,
            });
        }
        Ok(target)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.ip)
        } else {
            write!(f, "{}/{}", self.ip, self.len)
        }
    }
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_prefixes() {
        let t: Target = "198.18.0.7".parse().unwrap();
        assert!(t.is_host());
        assert_eq!(t.key_len(), 128);
        assert_eq!(t.key(), v4_mapped([198, 18, 0, 7]));
        let p: Target = "198.18.4.0/24".parse().unwrap();
        assert_eq!(p.key_len(), 120);
        assert!(p.contains("198.18.4.99".parse().unwrap()));
        assert!(!p.contains("198.18.5.1".parse().unwrap()));
        let v6: Target = "2001:2::/64".parse().unwrap();
        assert_eq!(v6.key_len(), 64);
        assert_eq!(v6.to_string(), "2001:2::/64");
        let mapped: Target = "::ffff:198.18.0.1".parse().unwrap();
        assert_eq!(mapped.to_string(), "198.18.0.1");
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert!(matches!(
            "198.18.0.1/24".parse::<Target>(),
            Err(TargetError::HostBits { .. })
        ));
        assert_eq!(
            "198.18.0.1/24".parse::<Target>().unwrap_err().to_string(),
            "'198.18.0.1/24' has host bits set; did you mean 198.18.0.0/24?"
        );
        assert!(matches!(
            "198.18.0.0/33".parse::<Target>(),
            Err(TargetError::BadLength { .. })
        ));
        assert!(matches!(
            "2001:2::/129".parse::<Target>(),
            Err(TargetError::BadLength { .. })
        ));
        assert!(matches!(
            "198.18.0".parse::<Target>(),
            Err(TargetError::BadAddress { .. })
        ));
        assert!(matches!(
            "".parse::<Target>(),
            Err(TargetError::BadAddress { .. })
        ));
        assert!(matches!(
            "1.2.3.4/x".parse::<Target>(),
            Err(TargetError::BadLength { .. })
        ));
    }

    #[test]
    fn key_round_trip() {
        for text in [
            "198.18.0.0/15",
            "198.18.0.9",
            "2001:2::/48",
            "2001:2::5",
            "0.0.0.0/0",
            "::/0",
        ] {
            let t: Target = text.parse().unwrap();
            assert_eq!(Target::from_key(t.key(), t.key_len()), t, "{text}");
        }
    }
}
