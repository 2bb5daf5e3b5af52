//! What happens to a running job whose process died (its lease expired):
//! the recovery verdict and the poison-pill rule.

use crate::model::{Control, JobState};

/// The reason recorded for a job whose pause was pending when its process
/// died.
pub const PAUSED_PROCESS_DIED: &str = "paused by operator (its process died first)";
/// The reason recorded for a job whose cancel was pending when its process
/// died.
pub const CANCELLED_PROCESS_DIED: &str = "cancelled by operator (its process died first)";
/// The reason recorded for a poison pill; `{n}` is the recovery count.
pub const POISON_PILL: &str =
    "poison pill: recovered {n} times; its process died while running it each time";
/// The reason recorded for a job put back in its queue; `{process}` is the
/// process that died.
pub const REQUEUED: &str = "recovered from process {process}, which died";
/// The reason recorded for a job put back in its queue from a process that
/// had been told to stop (a deploy's SIGTERM, then SIGKILL after its grace
/// period); `{process}` is that process.
pub const REQUEUED_STOPPING: &str = "recovered from process {process}, which was stopping";
/// How the ended stint is recorded in the job's history; `{process}` is the
/// process that died.
pub const STINT_ENDED: &str = "process {process} died";
/// The word the stint history records for a stint whose process died.
pub const STINT_LABEL: &str = "recovered";

/// Fills `{name}` placeholders of a reason template.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
}

/// Where a recovered job goes, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `enqueued` (at the head of its queue), `dead` (a poison pill), or
    /// `paused` / `cancelled` when an operator had asked for that.
    pub state: JobState,
    /// The job's recoveries in a row without progress, this one included.
    pub recoveries: u32,
    /// The reason recorded on the job.
    pub reason: String,
}

/// The rule of recovery: a job whose process `process` died while it ran,
/// recovered `recoveries` times in a row before without getting further,
/// with an operator's `pending` pause or cancel. A pending command is
/// carried out; otherwise the job goes back to the head of its queue with
/// its checkpoint, unless this recovery makes more than `max_recoveries` in
/// a row: then it is a poison pill and goes to `dead`. (A checkpoint with
/// more items done resets the count, so a long job survives any number of
/// deploys that kill it.)
///
/// A process that was `stopping` (it had been told to stop and said so to
/// the store, see `Store::mark_stopping`) was killed by whoever stopped it,
/// not by its job: the recovery does not count towards the poison pill
/// (the count stays as it was) and the job goes back to the head of its
/// queue, saying so.
pub fn recover(
    recoveries: u32,
    pending: Option<Control>,
    max_recoveries: u32,
    process: &str,
    stopping: bool,
) -> Verdict {
    let n = if stopping {
        recoveries
    } else {
        recoveries.saturating_add(1)
    };
    let (state, reason) = match pending {
        Some(Control::Cancel) => (JobState::Cancelled, CANCELLED_PROCESS_DIED.to_owned()),
        Some(Control::Pause) => (JobState::Paused, PAUSED_PROCESS_DIED.to_owned()),
        None if stopping => (
            JobState::Enqueued,
            fill(REQUEUED_STOPPING, &[("process", process)]),
        ),
        None if n > max_recoveries => (JobState::Dead, fill(POISON_PILL, &[("n", &n.to_string())])),
        None => (JobState::Enqueued, fill(REQUEUED, &[("process", process)])),
    };
    Verdict {
        state,
        recoveries: n,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recovery_past_the_limit_is_a_poison_pill_unless_an_operator_asked() {
        assert_eq!(recover(2, None, 3, "p", false).state, JobState::Enqueued);
        let v = recover(3, None, 3, "p", false);
        assert_eq!(v.state, JobState::Dead);
        assert_eq!(v.recoveries, 4);
        assert!(v.reason.contains("recovered 4 times"), "{}", v.reason);
        assert_eq!(
            recover(3, Some(Control::Pause), 3, "p", false).state,
            JobState::Paused
        );
        assert_eq!(
            recover(0, Some(Control::Cancel), 3, "p", false).state,
            JobState::Cancelled
        );
        assert_eq!(
            recover(0, None, 3, "host:1", false).reason,
            "recovered from process host:1, which died"
        );
    }

    #[test]
    fn a_stopping_process_never_counts_towards_the_poison_pill() {
        let v = recover(3, None, 3, "host:1", true);
        assert_eq!(v.state, JobState::Enqueued);
        assert_eq!(v.recoveries, 3);
        assert_eq!(
            v.reason,
            "recovered from process host:1, which was stopping"
        );
        let v = recover(40, None, 3, "p", true);
        assert_eq!((v.state, v.recoveries), (JobState::Enqueued, 40));
        assert_eq!(
            recover(3, Some(Control::Cancel), 3, "p", true).state,
            JobState::Cancelled
        );
    }
}
