//! systemd's readiness protocol (`sd_notify`), in the few lines it takes.
//!
//! Under `Type=notify` systemd passes `NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace) and reads newline-separated `KEY=VALUE` datagrams from it.
//! Without the variable (a terminal, a container) every call is a no-op. A lost
//! datagram only delays systemd's view of the state, so failures are logged, not
//! fatal.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where systemd listens, if it does.
pub struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`, if set.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|value| {
            let value = value.to_string_lossy().into_owned();
            let address = match value.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(&value),
            };
            address
                .map_err(|e| log::warn!("NOTIFY_SOCKET `{value}` is unusable: {e}"))
                .ok()
        });
        Notifier { target }
    }

    /// `READY=1`: the listeners accept and reload signals are handled. `MAINPID`
    /// names this process, which matters after a binary upgrade: the successor
    /// becomes the unit's main process (needs `NotifyAccess=all`).
    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS={status}",
            std::process::id()
        ));
    }

    /// `MAINPID` alone: a successor claims the unit before the old process exits.
    pub fn main_pid(&self) {
        self.send(&format!("MAINPID={}", std::process::id()));
    }

    /// `RELOADING=1`, stamped with the monotonic clock as `Type=notify-reload`
    /// requires; `ready` follows when the reload is over.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the config",
            monotonic_usec()
        ));
    }

    /// `STOPPING=1`: the drain has begun.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    fn send(&self, message: &str) {
        let Some(target) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(message.as_bytes(), target));
        if let Err(e) = sent {
            log::warn!("cannot notify systemd: {e}");
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares reloads with.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening() -> (tempdir::Dir, UnixDatagram, Notifier) {
        let dir = tempdir::Dir::new();
        let path = dir.path.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some(SocketAddr::from_pathname(&path).unwrap()),
        };
        (dir, socket, notifier)
    }

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn datagrams_are_newline_separated_assignments() {
        let (_dir, socket, notifier) = listening();
        notifier.ready("serving");
        let ready = received(&socket);
        assert!(ready.starts_with("READY=1\n"), "{ready}");
        assert!(ready.contains(&format!("\nMAINPID={}\n", std::process::id())));
        assert!(ready.ends_with("\nSTATUS=serving"));

        notifier.reloading();
        let reloading = received(&socket);
        let usec: u64 = reloading
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(reloading.starts_with("RELOADING=1\n") && usec > 0);

        notifier.stopping("draining");
        assert_eq!(received(&socket), "STOPPING=1\nSTATUS=draining");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        Notifier { target: None }.ready("serving");
    }

    /// A private directory for the test's socket, removed afterwards.
    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Self {
                let path = std::env::temp_dir().join(format!(
                    "switchyard-notify-{}-{}",
                    std::process::id(),
                    rand::random::<u32>()
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }
}
