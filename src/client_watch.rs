//! Ending an upstream wait early: when the client went away, or when a drain
//! ran out of time.
//!
//! On our own exchange path Pingora does not watch the downstream for us, so every
//! upstream wait races against the client connection: when the client closes, the
//! upstream exchange is dropped (closing its connection), which stops generation
//! that would otherwise be paid for and thrown away. The same race ends the wait
//! when `shutdown_timeout` ran out during a drain, so the client gets an error
//! (an SSE error event, for a stream) before the process exits.

use std::future::Future;

use pingora::proxy::Session;

use crate::lifecycle::Drain;

/// Either the awaited result, or why the wait ended first.
pub enum Raced<T> {
    Done(T),
    ClientGone,
    /// The drain's time ran out: answer `shutting_down` and end.
    CutOff,
}

/// Awaits `work` unless the client connection closes or `drain` cuts off first.
/// The request body must have been read completely before calling this.
pub async fn await_upstream<T>(
    session: &mut Session,
    drain: &Drain,
    work: impl Future<Output = T>,
) -> Raced<T> {
    let mut cutoff = drain.cutoff();
    tokio::select! {
        biased;
        out = work => Raced::Done(out),
        _ = session.downstream_session.read_body_or_idle(true) => Raced::ClientGone,
        _ = cutoff.wait_for(|&cut| cut) => Raced::CutOff,
    }
}
