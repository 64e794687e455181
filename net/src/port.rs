//! One daemon per port: the client port is bound without SO_REUSEPORT, and bound
//! before recovery.
//!
//! monoio's default listener sets SO_REUSEPORT, with which a second daemon on the same
//! address binds too and the kernel splits new connections between the two (two
//! independent books, one key's orders in both). Without it the second bind fails with
//! EADDRINUSE. SO_REUSEADDR stays: it only lets a restart bind over connections of the
//! previous run still in TIME_WAIT.
//!
//! [`ReservedPort`] binds and listens before recovery, so a daemon with a large data
//! directory learns of a busy port at once, not after a recovery of minutes. (A bound
//! socket that does not listen would not do: Linux lets a second SO_REUSEADDR socket
//! bind the same address until one listens.) Connections that arrive meanwhile wait in
//! the kernel's backlog until the net core accepts them, as they do during bootstrap.

use std::net::SocketAddr;

use monoio::net::TcpListener;

/// Connections the kernel queues before `accept` (monoio's default).
const BACKLOG: i32 = 1024;

/// Why the port could not be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{hint}")]
pub struct PortError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
    hint: &'static str,
}

impl PortError {
    fn new(addr: SocketAddr, source: std::io::Error) -> PortError {
        let hint = if source.kind() == std::io::ErrorKind::AddrInUse {
            " (another process, perhaps another bourse, listens on this address)"
        } else {
            ""
        };
        PortError { addr, source, hint }
    }
}

/// An address bound and listened on (so nobody else can take it), not yet accepting.
#[derive(Debug)]
pub struct ReservedPort {
    socket: socket2::Socket,
    addr: SocketAddr,
}

impl ReservedPort {
    /// Binds `addr` (port 0: one the kernel picks) without SO_REUSEPORT, and listens.
    pub fn bind(addr: SocketAddr) -> Result<ReservedPort, PortError> {
        let error = |e| PortError::new(addr, e);
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(error)?;
        socket.set_reuse_address(true).map_err(error)?;
        socket.bind(&addr.into()).map_err(error)?;
        socket.listen(BACKLOG).map_err(error)?;
        let bound = socket.local_addr().map_err(error)?.as_socket();
        let bound = bound.ok_or_else(|| error(std::io::Error::other("not an IP address")))?;
        Ok(ReservedPort { socket, addr: bound })
    }

    /// The bound address (with the port the kernel picked, if it picked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Hands the socket to monoio (on the net core's thread).
    pub fn listen(self) -> Result<TcpListener, PortError> {
        let addr = self.addr;
        let listener: std::net::TcpListener = self.socket.into();
        TcpListener::from_std(listener).map_err(|e| PortError::new(addr, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_is_refused_to_a_second_binder() {
        let first = ReservedPort::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let second = ReservedPort::bind(first.addr()).expect_err("the port is taken");
        assert_eq!(second.source.kind(), std::io::ErrorKind::AddrInUse);
        assert!(second.to_string().contains(&first.addr().to_string()), "{second}");
        assert!(second.to_string().contains("another process"), "{second}");
        drop(first);
    }
}
