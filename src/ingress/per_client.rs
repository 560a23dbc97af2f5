//! Connections open at once from one client, so that one address cannot hold every slot
//! under `server.max_connections` with connections that send nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::limit::ClientKey;

/// Open connections by client: an IPv4 address or an IPv6 /64, as the per-client rate
/// counts them. An entry lives while its client has a connection open, so the table never
/// holds more entries than there are open connections.
#[derive(Debug, Default)]
pub(super) struct OpenByClient {
    open: Mutex<HashMap<ClientKey, usize>>,
}

/// One counted connection; dropping it gives its place back.
#[derive(Debug)]
pub(super) struct Counted {
    table: Arc<OpenByClient>,
    key: ClientKey,
}

impl OpenByClient {
    /// Counts a new connection from `ip`, unless that client already has `most` open.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr, most: usize) -> Option<Counted> {
        let key = ClientKey::from(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= most {
            return None;
        }
        *count += 1;
        Some(Counted {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back_as_connections_close() {
        let table = Arc::new(OpenByClient::default());
        let one: IpAddr = "203.0.113.7".parse().unwrap();
        let held: Vec<_> = (0..2).map(|_| table.admit(one, 2).unwrap()).collect();
        assert!(table.admit(one, 2).is_none());
        assert!(table.admit("203.0.113.8".parse().unwrap(), 2).is_some());
        drop(held);
        assert!(
            table.open.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
        assert!(table.admit(one, 2).is_some());
    }

    #[test]
    fn addresses_of_one_ipv6_network_count_together() {
        let table = Arc::new(OpenByClient::default());
        let _first = table.admit("2001:db8:1:2::1".parse().unwrap(), 1).unwrap();
        assert!(
            table
                .admit("2001:db8:1:2::ffff".parse().unwrap(), 1)
                .is_none()
        );
        assert!(table.admit("2001:db8:1:3::1".parse().unwrap(), 1).is_some());
    }
}
