//! Commands: load an aggregate, decide what happens, save it, and do it again when another
//! writer saved first.

use crate::aggregate::{Aggregate, AggregateHandle};
use crate::backoff::Backoff;
use crate::error::ErrorKind;
use crate::event_store::EventStore;
use crate::repository::{Repository, RepositoryError};
use crate::snapshot::SnapshotStore;

/// Why a command failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The decision refused the command (the closure's own error); nothing was written.
    #[error("the command was refused: {0}")]
    Refused(E),
    /// Loading or saving failed: a conflict here means other writers kept saving first for
    /// the whole retry budget (about 10 s).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl<E> CommandError<E> {
    /// What kind of failure it is: [`ErrorKind::Refused`] when the decision refused it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CommandError::Refused(_) => ErrorKind::Refused,
            CommandError::Repository(error) => error.kind(),
        }
    }

    /// Whether the same command may succeed if run again later.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// Whether its events may have been saved although it failed.
    pub fn is_ambiguous(&self) -> bool {
        self.kind() == ErrorKind::Ambiguous
    }
}

impl<A, E, S> Repository<A, E, S>
where
    A: Aggregate,
    E: EventStore + 'static,
    S: SnapshotStore + 'static,
{
    /// Loads the aggregate, or a new one at version 0 when it has no events.
    pub async fn load_or_create(&self, id: &str) -> Result<AggregateHandle<A>, RepositoryError> {
        match self.load(id).await {
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(self.create_new(id)),
            loaded => loaded,
        }
    }

    /// Runs a command on aggregate `id`: loads it (or creates it), asks `decide` for the
    /// events the command records given the current state, and saves them. When another
    /// writer saved the aggregate first (`Conflict`), loads it again and decides again,
    /// after a short jittered pause, for about 10 s at most. A save that failed with a
    /// retryable error (the engine was unavailable, writers contended, or the outcome is
    /// unknown) is saved again as it was: its events keep their ids, so they are stored
    /// once.
    ///
    /// Returns the aggregate as saved; `decide` returning no event saves nothing.
    pub async fn execute<F, Err>(
        &self,
        id: &str,
        mut decide: F,
    ) -> Result<AggregateHandle<A>, CommandError<Err>>
    where
        F: FnMut(&A) -> Result<Vec<A::Event>, Err>,
    {
        let mut backoff = Backoff::new();
        loop {
            let mut aggregate = self.load_or_create(id).await?;
            for event in decide(aggregate.state()).map_err(CommandError::Refused)? {
                aggregate.record(event);
            }
            loop {
                match self.save(&mut aggregate).await {
                    Ok(_) => return Ok(aggregate),
                    // Nothing landed (the engine was unavailable, writers contended) or it
                    // may have (ambiguous): the same events, with the same ids, are stored
                    // once.
                    Err(error) if error.is_retryable() && backoff.pause().await => {
                        tracing::debug!("saving again after a failed save: {error}");
                    }
                    Err(error) if error.kind() == ErrorKind::Conflict && backoff.pause().await => {
                        break;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
}
