//! The SSRF guard: which addresses a URL a workflow author controls may reach. Loopback, private,
//! link-local (the cloud metadata address 169.254.169.254 among them), CGNAT, unique-local,
//! unspecified, multicast, broadcast and reserved addresses are refused, in either IP version
//! and through IPv4-mapped, -compatible and NAT64 IPv6 forms, unless the operator allowed the
//! host, the address or its network (`KAI_HTTP_ALLOWED_HOSTS`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// What the operator allows on purpose: host names, addresses and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
    networks: Vec<IpNet>,
}

/// A refusal: the host and the rule it broke. Never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the SSRF guard refused {host}: {address} is a {rule} address; an operator can allow it \
     with KAI_HTTP_ALLOWED_HOSTS"
)]
pub struct Refused {
    pub host: String,
    pub address: IpAddr,
    pub rule: &'static str,
}

impl FromStr for AllowedHosts {
    type Err = String;

    /// A comma-separated list of host names, IP addresses and CIDR networks.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut allowed = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(network) = entry.parse::<IpNet>() {
                allowed.networks.push(network);
            } else if let Ok(address) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                allowed.networks.push(IpNet::from(address));
            } else if is_host_name(entry) {
                allowed
                    .names
                    .push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!(
                    "`{entry}` is neither a host name, an IP address nor a CIDR network"
                ));
            }
        }
        Ok(allowed)
    }
}

impl AllowedHosts {
    /// Whether `host` (a URL's host, lowercase) is allowed by name.
    pub fn allows_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(host))
    }

    /// Whether `address` is allowed, by itself or its network.
    pub fn allows_address(&self, address: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&address))
    }

    /// Checks one address `host` resolved to (or is): `Err` names the rule it breaks.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Refused> {
        if self.allows_name(host) || self.allows_address(address) {
            return Ok(());
        }
        match forbidden_rule(address) {
            Some(rule) => Err(Refused {
                host: host.to_owned(),
                address,
                rule,
            }),
            None => Ok(()),
        }
    }
}

/// The rule that forbids `address`, if any.
pub fn forbidden_rule(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = address.octets();
    Some(match () {
        _ if address.is_loopback() => "loopback",
        _ if address.is_unspecified() || a == 0 => "unspecified (0.0.0.0/8)",
        _ if address.is_private() => "private",
        _ if address.is_link_local() => "link-local (cloud metadata)",
        _ if a == 100 && (64..128).contains(&b) => "carrier-grade NAT (100.64.0.0/10)",
        _ if address.is_broadcast() => "broadcast",
        _ if address.is_multicast() => "multicast",
        _ if a >= 240 => "reserved (240.0.0.0/4)",
        _ if a == 192 && b == 0 && address.octets()[2] == 0 => "IETF protocol (192.0.0.0/24)",
        _ if a == 198 && (18..20).contains(&b) => "benchmarking (198.18.0.0/15)",
        _ => return None,
    })
}

fn forbidden_v6(address: Ipv6Addr) -> Option<&'static str> {
    if address.is_loopback() {
        return Some("loopback");
    }
    if address.is_unspecified() {
        return Some("unspecified");
    }
    // An IPv4 address inside IPv6 is judged as the IPv4 address it carries.
    if let Some(v4) = embedded_v4(address) {
        return forbidden_v4(v4);
    }
    let first = address.segments()[0];
    Some(match () {
        _ if address.is_multicast() => "multicast",
        _ if first & 0xfe00 == 0xfc00 => "unique-local (fc00::/7)",
        _ if first & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        _ if first & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        _ if first == 0x2001 && address.segments()[1] == 0x0db8 => "documentation (2001:db8::/32)",
        _ => return None,
    })
}

/// The IPv4 address an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) or 6to4 (`2002:ab:cd::`) address carries.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = address.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail()),
        [0, 0, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

fn is_host_name(entry: &str) -> bool {
    !entry.is_empty()
        && entry.len() <= 253
        && entry.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(address: &str) -> Option<&'static str> {
        forbidden_rule(address.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_refused_in_every_form() {
        for address in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(refused(address).is_some(), "{address} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refused(address), None, "{address}");
        }
    }

    #[test]
    fn operators_allow_hosts_addresses_and_networks() {
        let allowed: AllowedHosts = "models.internal, 10.0.0.0/8, ::1, [fd00::2]"
            .parse()
            .unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(allowed.check("models.internal", loopback).is_ok());
        assert!(allowed.check("MODELS.internal.", loopback).is_ok());
        assert!(allowed.check("other", "10.9.8.7".parse().unwrap()).is_ok());
        assert!(allowed.check("other", "::1".parse().unwrap()).is_ok());
        let refusal = allowed.check("evil.example", loopback).unwrap_err();
        assert_eq!(refusal.rule, "loopback");
        assert!(refusal.to_string().contains("evil.example"));
        assert!("not a host!".parse::<AllowedHosts>().is_err());
    }
}
