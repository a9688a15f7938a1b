//! Where a request comes from, for the audit log and the per-address login limit.
//!
//! Behind the dashboard (which proxies `/api`) or an ingress, every request arrives from the
//! proxy, so "from where" would name the proxy and one guesser would lock every person out of
//! logging in. A proxy says who it forwards for in `X-Forwarded-For`, but anyone can send that
//! header, so it is believed only from the proxies the operator names (`--trusted-proxies`):
//! the address is the right-most one in the chain that is not a trusted proxy, as nginx's
//! `real_ip_recursive` and Rails' `remote_ip` take it.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use philotes_core::{Error, ErrorKind, Result};

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated addresses or CIDR networks (`10.0.0.0/8, 127.0.0.1`); empty: none.
    pub fn parse(list: &str) -> Result<TrustedProxies> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "--trusted-proxies: `{item}` is not an address or a network (like 10.0.0.0/8 or 127.0.0.1)"
                        ),
                    )
                })?;
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    fn trusts(&self, ip: &IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: `peer` itself, or — when `peer` is a trusted proxy — the
    /// right-most address of `X-Forwarded-For` that is not one.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(&peer) {
            return peer;
        }
        let chain: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in chain.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // A hop we cannot read: stop at the last one we could.
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(&client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            if let Ok(v) = v.parse() {
                h.append("x-forwarded-for", v);
            }
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("10.0.0.5"), &headers(&["203.0.113.9"])),
            ip("10.0.0.5")
        );
        let t = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap_or_default();
        assert_eq!(
            t.client(ip("10.0.0.5"), &headers(&["203.0.113.9"])),
            ip("203.0.113.9")
        );
        // A client that sends its own header cannot hide behind it: the right-most untrusted hop.
        assert_eq!(
            t.client(
                ip("10.0.0.5"),
                &headers(&["1.2.3.4, 203.0.113.9, 10.0.0.7"])
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            t.client(ip("10.0.0.5"), &headers(&["198.51.100.1", "203.0.113.9"])),
            ip("203.0.113.9")
        );
        assert_eq!(t.client(ip("10.0.0.5"), &headers(&[])), ip("10.0.0.5"));
        assert_eq!(
            t.client(ip("10.0.0.5"), &headers(&["garbage"])),
            ip("10.0.0.5")
        );
        assert_eq!(
            t.client(ip("::ffff:127.0.0.1"), &headers(&["203.0.113.9"])),
            ip("203.0.113.9")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("").is_ok_and(|t| t.0.is_empty()));
    }
}
