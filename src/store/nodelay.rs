//! TCP_NODELAY on PostgreSQL connections.
//!
//! sqlx 0.9.0 stopped setting it on its sockets (transact-rs/sqlx#4335; the fix,
//! #4336, is merged but not released), so a statement that spans more than one TCP
//! segment, such as a group commit's multi-row insert of cards, waits for the
//! server's delayed ACK, about 40 ms, under Nagle's algorithm. Measured with
//! `BENCH_DB=postgres cargo bench --bench load`: button clicks on PostgreSQL over TCP
//! ran at ~200/s with the writer idle, and at ~1,700/s over the Unix socket, which
//! Nagle does not touch. Until sqlx sets it again, every new pool connection turns it
//! on here, for this process's TCP sockets to the database's port that lack it.

use std::os::fd::BorrowedFd;

/// Sets TCP_NODELAY on this process's TCP sockets connected to `port` that lack it.
pub(super) fn on_sockets_to(port: u16) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !socket {
            continue;
        }
        // SAFETY: the descriptor was open a moment ago and is only borrowed for two
        // socket options. Should another thread close it meanwhile, the calls fail
        // (and are ignored); should the number be reused at once, a socket that
        // happens to be connected to the same port gets TCP_NODELAY, which is harmless.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        let to_database = sock
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if to_database && sock.tcp_nodelay().is_ok_and(|on| !on) {
            let _ = sock.set_tcp_nodelay(true);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sockets_to_the_port_get_tcp_nodelay_and_others_keep_theirs() {
        let database = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_database = std::net::TcpStream::connect(database.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_database.nodelay().unwrap() && !to_other.nodelay().unwrap());
        super::on_sockets_to(database.local_addr().unwrap().port());
        assert!(to_database.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
    }
}
