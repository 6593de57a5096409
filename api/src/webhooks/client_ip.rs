//! The caller's address: the socket peer, or, when the peer is one of our trusted proxies, the
//! nearest address in `X-Forwarded-For` that is not one of them (addresses to its left could
//! have been written by the caller itself).

use std::net::IpAddr;

use ipnet::IpNet;

/// The address of `request`'s caller, as `client_ip` finds it.
pub fn of_request(request: &poem::Request, trusted: &[IpNet]) -> Option<IpAddr> {
    client_ip(
        request.remote_addr().as_socket_addr().map(|a| a.ip()),
        request.header("x-forwarded-for"),
        trusted,
    )
}

/// `None` when a trusted proxy forwarded an address that is not one: the caller is unknown.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(forwarded) = forwarded_for else {
        return Some(peer);
    };
    let mut nearest = peer;
    for hop in forwarded.rsplit(',') {
        let hop: IpAddr = hop.trim().parse().ok()?;
        if !is_trusted(&hop) {
            return Some(hop);
        }
        nearest = hop;
    }
    // Every hop is one of our proxies: the request started at the leftmost.
    Some(nearest)
}

/// Whether `ip` may call a webhook that allows `networks` (empty: every address).
pub fn allowed(ip: Option<IpAddr>, networks: &[IpNet]) -> bool {
    networks.is_empty()
        || ip.is_some_and(|ip| networks.iter().any(|net| net.contains(&normalise(ip))))
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = Some("6.6.6.6, 203.0.113.9, 10.0.0.2");
        // An untrusted peer cannot claim another address.
        assert_eq!(
            client_ip(Some(ip("198.51.100.1")), xff, &proxies),
            Some(ip("198.51.100.1"))
        );
        // Behind our proxies: the nearest untrusted hop, not what the caller wrote leftmost.
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), xff, &proxies),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), None, &proxies),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), Some("junk"), &proxies),
            None
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), Some("10.1.1.1"), &proxies),
            Some(ip("10.1.1.1"))
        );
    }

    #[test]
    fn allow_lists_match_v4_v6_and_mapped_addresses() {
        let nets: Vec<IpNet> = vec![
            "192.168.0.0/16".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(allowed(Some(ip("192.168.4.2")), &nets));
        assert!(allowed(Some(ip("::ffff:192.168.4.2")), &nets));
        assert!(allowed(Some(ip("2001:db8::1")), &nets));
        assert!(!allowed(Some(ip("127.0.0.1")), &nets));
        assert!(!allowed(None, &nets));
        assert!(allowed(None, &[]));
    }
}
