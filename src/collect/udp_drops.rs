//! Datagrams the kernel dropped on our sockets because flowy did not read
//! them fast enough (receive buffer full), from `/proc/self/net/udp{,6}`.
//!
//! SO_RXQ_OVFL would deliver the same count, but only as a control message
//! of the *next* datagram read, which needs `recvmsg` on the hot path and
//! says nothing while the exporters fall silent after a burst. The `drops`
//! column of `/proc/net/udp` is the socket's own counter (`sk_drops`), read
//! off the hot path a few times a minute. A socket is found by its inode,
//! unique per socket whatever the reuseport group or address family.

use std::collections::HashMap;
use std::path::Path;

/// The tables of the daemon's own network namespace.
const TABLES: [&str; 2] = ["/proc/self/net/udp", "/proc/self/net/udp6"];

/// Column of the inode and of the drop counter in a table row (`sl` is 0).
const INODE: usize = 9;
const DROPS: usize = 12;

/// The socket inode of `sock` (the `st_ino` of its file descriptor), the
/// key of its row in the tables.
#[cfg(target_os = "linux")]
pub fn socket_inode(sock: &impl std::os::fd::AsRawFd) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let fd = sock.as_raw_fd();
    Ok(std::fs::metadata(format!("/proc/self/fd/{fd}"))?.ino())
}

/// Without `/proc` there is no drop counter to read.
#[cfg(not(target_os = "linux"))]
pub fn socket_inode<T>(_: &T) -> std::io::Result<u64> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "socket drop counters need Linux /proc",
    ))
}

/// The drop counter of every socket in one table's text, by inode. Rows
/// that do not parse are skipped: the header, and any layout a future
/// kernel may bring.
pub fn parse_table(text: &str, into: &mut HashMap<u64, u64>) {
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(inode), Some(drops)) = (cols.get(INODE), cols.get(DROPS)) else {
            continue;
        };
        if let (Ok(inode), Ok(drops)) = (inode.parse(), drops.parse()) {
            into.insert(inode, drops);
        }
    }
}

/// The drop counter of every UDP socket of the namespace, by inode; fails
/// only when no table can be read at all.
pub fn read_drops() -> std::io::Result<HashMap<u64, u64>> {
    read_tables(&TABLES.map(Path::new))
}

fn read_tables(paths: &[&Path]) -> std::io::Result<HashMap<u64, u64>> {
    let mut out = HashMap::new();
    let mut last_err = None;
    let mut read_any = false;
    for p in paths {
        match std::fs::read_to_string(p) {
            Ok(text) => {
                parse_table(&text, &mut out);
                read_any = true;
            }
            // IPv6 may be disabled: its table is then missing.
            Err(e) => last_err = Some(e),
        }
    }
    match (read_any, last_err) {
        (false, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    const SAMPLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  421: 0100007F:A8F3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 991828 2 0000000000000000 17
 1040: 00000000:0807 00000000:0000 07 00000000:00002400 00:00000000 00000000   100        0 5512 2 0000000000000000 0
";

    #[test]
    fn rows_are_keyed_by_inode_and_the_header_is_skipped() {
        let mut m = HashMap::new();
        parse_table(SAMPLE, &mut m);
        assert_eq!(m, HashMap::from([(991_828, 17), (5512, 0)]));
    }

    #[test]
    fn a_live_socket_is_found_by_its_inode() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let inode = socket_inode(&s).expect("inode");
        let drops = read_drops().expect("tables");
        assert_eq!(drops.get(&inode), Some(&0), "inode {inode}");
    }

    #[test]
    fn a_missing_table_is_an_error_only_when_all_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let present = dir.path().join("udp");
        std::fs::write(&present, SAMPLE).expect("write");
        let missing = dir.path().join("udp6");
        let m = read_tables(&[&present, &missing]).expect("one table read");
        assert_eq!(m.len(), 2);
        assert!(read_tables(&[&missing]).is_err());
    }
}
