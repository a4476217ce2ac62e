//! Noticing that the client went away while we wait for an upstream.
//!
//! On our own exchange path Pingora does not watch the downstream for us, so every
//! upstream wait races against the client connection: when the client closes, the
//! upstream exchange is dropped (closing its connection), which stops generation
//! that would otherwise be paid for and thrown away.

use std::future::Future;

use pingora::proxy::Session;

/// Either the awaited result, or news that the client left first.
pub enum Raced<T> {
    Done(T),
    ClientGone,
}

/// Awaits `work` unless the client connection closes first. The request body must
/// have been read completely before calling this.
pub async fn unless_client_leaves<T>(
    session: &mut Session,
    work: impl Future<Output = T>,
) -> Raced<T> {
    tokio::select! {
        biased;
        out = work => Raced::Done(out),
        _ = session.downstream_session.read_body_or_idle(true) => Raced::ClientGone,
    }
}
