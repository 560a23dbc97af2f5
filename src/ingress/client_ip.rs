//! The client's address: the peer's, or from `X-Forwarded-For` when the peer is a trusted
//! proxy.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client address to limit, allow and forward. Walks `X-Forwarded-For` from the right,
/// skipping trusted proxies, and stops at the first address that is not one: addresses
/// further left were written by the client itself and prove nothing.
pub(super) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(&client) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// IPv4-mapped IPv6 addresses as plain IPv4, so one client has one key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let got = client_ip(
            ip("203.0.113.9"),
            &headers("1.2.3.4"),
            &["10.0.0.0/8".parse().unwrap()],
        );
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_proxy_forwards_the_rightmost_untrusted_address() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let got = client_ip(
            ip("10.0.0.2"),
            &headers("6.6.6.6, 198.51.100.7, 10.0.0.5"),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn garbage_in_the_header_stops_the_walk() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let got = client_ip(ip("10.0.0.2"), &headers("198.51.100.7, nonsense"), &trusted);
        assert_eq!(got, ip("10.0.0.2"));
    }
}
