//! The gateway's life under an operator: readiness, hot reload, graceful
//! drain and binary upgrade (DESIGN.md §2 "Command line", issue 8).
//!
//! Pingora supplies the listeners, the socket hand-over and the runtimes; it
//! has no reload, and its shutdown sleeps a fixed grace period. The
//! [`Supervisor`] replaces Pingora's signal watch and drives all of it.

mod config_file;
mod drain;
mod notify;
pub mod process;
mod reload;
mod services;
mod supervisor;
mod upgrade;

pub use config_file::Fingerprint;
pub use drain::{Drain, Ending, InFlight};
pub use notify::Notifier;
pub use reload::Bound;
pub use services::{KeepOpenWhileDraining, Stoppable};
pub use supervisor::Supervisor;
pub use upgrade::Handover;
