//! Process settings made before Pingora starts: the open-file limit, and the
//! supervisor's signals held off until its handlers are installed.

/// Raises the soft open-file limit to the hard one. Every stream holds two
/// sockets (client and upstream), and the usual soft limit of 1024 would cap a
/// gateway at a few hundred streams; systemd's `LimitNOFILE=` sets the hard one.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill and setrlimit to read.
    let result = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return log::warn!("cannot read the open-file limit");
        }
        if limit.rlim_cur >= limit.rlim_max {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &raised)
    };
    if result == 0 {
        log::info!(
            "open-file limit raised from {} to {}",
            limit.rlim_cur,
            limit.rlim_max
        );
    } else {
        log::warn!(
            "cannot raise the open-file limit from {}: {}",
            limit.rlim_cur,
            std::io::Error::last_os_error()
        );
    }
}

/// Ignores SIGHUP, SIGQUIT and SIGUSR2 until the supervisor installs its
/// handlers. Their default action ends the process, and `systemctl reload` or a
/// repeated upgrade command may send one while the gateway is still starting —
/// a successor of a binary upgrade then already holds the listening sockets.
/// (A SIGTERM that early still ends it: nothing is in flight yet.)
pub fn hold_off_signals() {
    for signal in [libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR2] {
        // SAFETY: installing SIG_IGN has no preconditions; tokio later replaces
        // it with its own handler.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}
