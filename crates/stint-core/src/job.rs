//! The `Job` trait and the registry of handlers by kind.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::JobError;
use crate::model::{JobOptions, Limit, Unique};

/// A kind of job: its arguments are the type's fields (serde), its work is
/// `perform`.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use stint_core::{Ctx, Job, JobError};
///
/// #[derive(Serialize, Deserialize)]
/// struct CountTo { n: u64 }
///
/// impl Job for CountTo {
///     const KIND: &'static str = "CountTo";
///
///     async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
///         let mut next: u64 = ctx.cursor()?.unwrap_or(0);
///         ctx.set_total(self.n);
///         while next < self.n {
///             next += 1;
///             ctx.checkpoint(&next).await?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The name the handler is registered and pushed under (Sidekiq's
    /// `class`). Keep it stable: stored jobs refer to it.
    const KIND: &'static str;

    /// Options a push of this kind uses unless the push says otherwise.
    fn options() -> JobOptions {
        JobOptions::default()
    }

    /// This job's unique key, from its arguments (e.g. the file it
    /// imports): a push while a job holding the key is in the key's scope
    /// stores nothing and answers the holder's jid. `Push::unique` wins;
    /// default: the kind's `options()`.
    fn unique(&self) -> Option<Unique> {
        None
    }

    /// The key whose concurrency and rate limits this job counts towards,
    /// from its arguments (e.g. `tenant:42`). `Push::limit` wins; default:
    /// the kind's `options()`.
    fn limit(&self) -> Option<Limit> {
        None
    }

    /// Does the work of one stint. Return `Ok` when the job is done; `?` on
    /// `Ctx::checkpoint` ends the stint cleanly when it must stop.
    fn perform(&self, ctx: &mut Ctx) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// A running stint's future: gives the `Ctx` back with the result.
pub(crate) type StintFuture = BoxFuture<'static, (Ctx, Result<(), JobError>)>;

type Handler = Arc<dyn Fn(Value, Ctx) -> Result<StintFuture, serde_json::Error> + Send + Sync>;

/// The handlers a worker runs, by kind (`Job::KIND`). A job whose kind
/// is not registered is retried (another worker may know it), then dead.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
}

impl Registry {
    /// An empty registry; a worker builds its own (`WorkerBuilder::register`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the handler of kind `J` under `J::KIND`, replacing any
    /// handler registered under that name before. The handler deserializes
    /// each job's arguments as `J`: arguments that do not deserialize send
    /// the job to `dead` at once.
    pub fn register<J: Job>(&mut self) {
        let handler: Handler = Arc::new(|args: Value, ctx: Ctx| {
            let job: J = serde_json::from_value(args)?;
            let fut: StintFuture = Box::pin(async move {
                let mut ctx = ctx;
                let result = job.perform(&mut ctx).await;
                (ctx, result)
            });
            Ok(fut)
        });
        self.handlers.insert(J::KIND.to_owned(), handler);
    }

    /// The registered kinds, sorted (named in the error of a job whose kind
    /// this worker does not know).
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<_> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
    }
}
