//! Building Pingora peers from resolved addresses.

use std::net::SocketAddr;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use crate::config::UpstreamUrl;

/// A peer for one resolved address of `url`. The SNI (and the name the certificate
/// is verified against) is always the URL's host: an empty SNI would turn
/// certificate verification off.
pub fn for_address(addr: SocketAddr, url: &UpstreamUrl, connect_timeout: Duration) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, url.tls, url.host.clone());
    peer.options.connection_timeout = Some(connect_timeout);
    peer.options.total_connection_timeout = Some(connect_timeout);
    peer
}
