//! Binary upgrade: handing the listening sockets to a successor process.
//!
//! Pingora's hand-over: the new binary starts with `-u` and waits on
//! `upgrade_sock`; the old one sends it every listening socket (SCM_RIGHTS) and
//! drains. Pingora would send them itself on SIGQUIT, but then shuts down even
//! when nobody took them, and gives in-flight streams only a fixed grace time.
//! Here the supervisor sends them (the same `Fds::send_to_sock`), keeps serving
//! if that failed, and drains like a shutdown that still answers requests.
//!
//! Under systemd the successor must live in the unit's cgroup to become its
//! main process, so on SIGUSR2 the gateway starts it itself.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, OnceLock};

use pingora::server::ListenFds;

/// The sockets to hand over, where to, and how to start a successor.
pub struct Handover {
    listen_fds: Arc<OnceLock<ListenFds>>,
    /// `pingora.upgrade_sock`, required: Pingora's default lies in the
    /// world-writable /tmp, where another local user could bind it first and
    /// be handed the API socket.
    upgrade_sock: Option<String>,
    /// This binary's path, read at start-up: an upgrade replaces the file there.
    binary: Option<PathBuf>,
    config_path: PathBuf,
}

impl Handover {
    /// A hand-over over `upgrade_sock` of the sockets that `listen_fds` will
    /// hold once the listeners started.
    pub fn new(
        listen_fds: Arc<OnceLock<ListenFds>>,
        upgrade_sock: Option<String>,
        config_path: PathBuf,
    ) -> Self {
        Handover {
            listen_fds,
            upgrade_sock,
            binary: std::env::current_exe().ok(),
            config_path,
        }
    }

    /// Sends every listening socket to the process waiting on `upgrade_sock`.
    /// Pingora retries the connection for about five seconds.
    pub async fn send_sockets(&self) -> Result<(), String> {
        let upgrade_sock = self.upgrade_sock.clone().ok_or(
            "`pingora.upgrade_sock` is not set; set it to a path in a directory only this \
             service can write (e.g. /run/switchyard/upgrade.sock)",
        )?;
        let fds = self
            .listen_fds
            .get()
            .cloned()
            .ok_or("the listeners have not started")?;
        let path = upgrade_sock.clone();
        let sent = tokio::task::spawn_blocking(move || fds.lock().send_to_sock(path.as_str()))
            .await
            .map_err(|e| e.to_string())?;
        sent.map(|_| ())
            .map_err(|e| format!("no successor took the sockets on {upgrade_sock}: {e}"))
    }

    /// Starts the successor: this binary's path (by now the new binary), with
    /// `-u` and the same config file. It inherits stdout, stderr and the
    /// environment (`NOTIFY_SOCKET`, `CREDENTIALS_DIRECTORY`).
    pub fn start_successor(&self) -> std::io::Result<Child> {
        if self.upgrade_sock.is_none() {
            return Err(std::io::Error::other(
                "`pingora.upgrade_sock` is not set, so no socket could be handed over",
            ));
        }
        let binary = self.binary.as_ref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "this binary's path is unknown",
            )
        })?;
        Command::new(binary)
            .arg("-u")
            .arg("-c")
            .arg(&self.config_path)
            .spawn()
    }
}
