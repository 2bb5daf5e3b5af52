//! The lifecycle rules rendered for stores that apply them inside the
//! database: SQL expressions for the SQL stores' batched statements, and a
//! Lua prelude for the Redis store's scripts. Each is generated from the
//! functions of [`super::ending`] and [`super::recovery`], so a rule is
//! still written once; the conformance suite checks every store against
//! the functions themselves, pair by pair.

use crate::model::{Control, JobState};

use super::command::Move;
use super::ending::{after_stint, StintEnd};
use super::recovery::{self, recover};

/// The pending controls a job can have, as stores write them (`''` for
/// none in Lua, `NULL` in SQL).
const CONTROLS: [Option<Control>; 3] = [None, Some(Control::Pause), Some(Control::Cancel)];

/// The ends a store records (the others write nothing, or are a split).
const RECORDED: [StintEnd; 7] = [
    StintEnd::Succeeded,
    StintEnd::Failed,
    StintEnd::Dead,
    StintEnd::Interrupted,
    StintEnd::Paused,
    StintEnd::Cancelled,
    StintEnd::Snoozed,
];

/// A string literal, in SQL or Lua (both take single quotes, doubled in
/// SQL, escaped in Lua).
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn lua_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A reason template with `{name}` placeholders as an expression that
/// joins its text with the given expressions (`op` is `||` or `..`).
fn template(text: &str, values: &[(&str, &str)], quote: fn(&str) -> String, op: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        let Some((_, expr)) = values.iter().find(|(n, _)| *n == name) else {
            break;
        };
        if start > 0 {
            parts.push(quote(&rest[..start]));
        }
        parts.push(format!("({expr})"));
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(quote(rest));
    }
    parts.join(&format!(" {op} "))
}

/// The state and the reason a store writes for a move that stops a job
/// where it is ([`Move::Pause`]: `paused`; [`Move::Cancel`]: `cancelled`),
/// as the parameters of its update; `None` for the other moves.
pub fn stopped(to: Move) -> Option<(JobState, &'static str)> {
    match to {
        Move::Pause => Some((JobState::Paused, super::PAUSED_BY_OPERATOR)),
        Move::Cancel => Some((JobState::Cancelled, super::CANCELLED_BY_OPERATOR)),
        _ => None,
    }
}

/// The states no job leaves on its own, as an SQL list:
/// `('succeeded', 'dead', 'cancelled')`.
pub fn sql_final_states() -> String {
    let names: Vec<String> = JobState::ALL
        .into_iter()
        .filter(|s| s.is_final())
        .map(|s| sql_str(s.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

/// The state after a stint that ended as `end`, as an SQL expression of the
/// job's pending-control column `control` (see [`after_stint`]).
pub fn sql_state_after(end: StintEnd, control: &str) -> String {
    let alone = state_name(end, None);
    let arms: Vec<String> = CONTROLS[1..]
        .iter()
        .filter_map(|c| {
            let s = state_name(end, *c);
            (s != alone).then(|| {
                format!(
                    "WHEN {} THEN {}",
                    sql_str(c.expect("a control").as_str()),
                    sql_str(s)
                )
            })
        })
        .collect();
    if arms.is_empty() {
        sql_str(alone)
    } else {
        format!(
            "CASE {control} {} ELSE {} END",
            arms.join(" "),
            sql_str(alone)
        )
    }
}

/// The state after a stint, as an SQL expression of a column `label`
/// holding the end's label ([`StintEnd::label`]) and the job's
/// pending-control column `control`.
pub fn sql_state_after_label(label: &str, control: &str) -> String {
    let arms: Vec<String> = RECORDED
        .iter()
        .map(|end| {
            format!(
                "WHEN {} THEN {}",
                sql_str(end.label()),
                sql_state_after(*end, control)
            )
        })
        .collect();
    format!("CASE {label} {} END", arms.join(" "))
}

fn state_name(end: StintEnd, pending: Option<Control>) -> &'static str {
    after_stint(end, pending)
        .expect("a recorded end writes a state")
        .as_str()
}

/// The verdict of recovery as SQL expressions `(recoveries, state,
/// reason)` of the job's recoveries so far `recoveries`, its
/// pending-control column `control`, the limit `max`, the dead process's id
/// `process` and a boolean expression `stopping`, true when that process
/// had been told to stop (see [`recover`]).
pub fn sql_recovery(
    recoveries: &str,
    control: &str,
    max: &str,
    process: &str,
    stopping: &str,
) -> (String, String, String) {
    let n = format!("{recoveries} + 1");
    debug_assert_eq!(recover(2, None, 3, "", true).recoveries, 2);
    let count = format!("CASE WHEN {stopping} THEN {recoveries} ELSE {n} END");
    let mut state = format!("CASE {control}");
    let mut reason = format!("CASE {control}");
    for c in [Control::Cancel, Control::Pause] {
        let v = recover(0, Some(c), u32::MAX, "", false);
        state += &format!(
            " WHEN {} THEN {}",
            sql_str(c.as_str()),
            sql_str(v.state.as_str())
        );
        reason += &format!(" WHEN {} THEN {}", sql_str(c.as_str()), sql_str(&v.reason));
    }
    let poison = poison_rule(&n, max);
    let stopped = recover(u32::MAX - 1, None, 0, "", true);
    state += &format!(
        " ELSE CASE WHEN {stopping} THEN {} WHEN {poison} THEN {} ELSE {} END END",
        sql_str(stopped.state.as_str()),
        sql_str(JobState::Dead.as_str()),
        sql_str(JobState::Enqueued.as_str())
    );
    reason += &format!(
        " ELSE CASE WHEN {stopping} THEN {} WHEN {poison} THEN {} ELSE {} END END",
        template(
            recovery::REQUEUED_STOPPING,
            &[("process", process)],
            sql_str,
            "||"
        ),
        template(recovery::POISON_PILL, &[("n", &n)], sql_str, "||"),
        template(recovery::REQUEUED, &[("process", process)], sql_str, "||"),
    );
    (count, state, reason)
}

/// How the ended stint of a recovered job is recorded, as an SQL
/// expression of the dead process's id.
pub fn sql_recovered_stint(process: &str) -> String {
    template(
        recovery::STINT_ENDED,
        &[("process", process)],
        sql_str,
        "||",
    )
}

/// [`recover`]'s poison-pill condition on `n` recoveries in a row (this one
/// included) and the limit `max`, as an expression.
fn poison_rule(n: &str, max: &str) -> String {
    debug_assert_eq!(recover(1, None, 1, "", false).state, JobState::Dead);
    debug_assert_eq!(recover(0, None, 1, "", false).state, JobState::Enqueued);
    format!("({n}) > ({max})")
}

/// The code the Redis store's `complete.lua` takes for each end.
pub fn lua_code(end: StintEnd) -> &'static str {
    match end {
        StintEnd::Succeeded => "S",
        StintEnd::Failed => "R",
        StintEnd::Dead => "D",
        StintEnd::Interrupted => "Q",
        StintEnd::Paused => "P",
        StintEnd::Cancelled => "C",
        StintEnd::Split => "W",
        StintEnd::Snoozed => "Z",
        StintEnd::LeaseLost => "L",
    }
}

/// A Lua prelude for the Redis store's scripts, holding the rules:
/// - `AFTER_STINT[code][control]`: the state after a stint (`control` ''
///   when none is pending);
/// - `recovery_verdict(n, control, max, process, stopping)` → state,
///   reason, recoveries, for a job recovered for the `n`th time in a row
///   (`stopping`: its process had been told to stop; then the count stays
///   `n - 1`);
/// - `RECOVERED_LABEL` and `recovered_stint(process)`: how the ended stint
///   is recorded;
/// - `FINAL_STATE[state]`: true for the states no job leaves on its own;
/// - `CHILDREN_FINISHED`: the reason of a split parent whose last child
///   finished.
pub fn lua_rules() -> String {
    let mut lua = String::from("-- Generated from stint_core::lifecycle: do not edit.\n");
    lua += "local AFTER_STINT = {\n";
    for end in RECORDED {
        let arms: Vec<String> = CONTROLS
            .iter()
            .map(|c| {
                format!(
                    "[{}] = {}",
                    lua_str(c.map(Control::as_str).unwrap_or("")),
                    lua_str(state_name(end, *c))
                )
            })
            .collect();
        lua += &format!("  {} = {{{}}},\n", lua_code(end), arms.join(", "));
    }
    lua += "}\n";
    lua += "local function recovery_verdict(n, control, max, process, stopping)\n";
    for c in [Control::Cancel, Control::Pause] {
        let v = recover(0, Some(c), u32::MAX, "", false);
        lua += &format!(
            "  if control == {} then return {}, {}, (stopping and n - 1 or n) end\n",
            lua_str(c.as_str()),
            lua_str(v.state.as_str()),
            lua_str(&v.reason)
        );
    }
    let stopped = recover(u32::MAX - 1, None, 0, "", true);
    lua += &format!(
        "  if stopping then return {}, {}, n - 1 end\n",
        lua_str(stopped.state.as_str()),
        template(
            recovery::REQUEUED_STOPPING,
            &[("process", "process")],
            lua_str,
            ".."
        ),
    );
    lua += &format!(
        "  if {} then return {}, {}, n end\n  return {}, {}, n\nend\n",
        poison_rule("n", "max"),
        lua_str(JobState::Dead.as_str()),
        template(recovery::POISON_PILL, &[("n", "n")], lua_str, ".."),
        lua_str(JobState::Enqueued.as_str()),
        template(recovery::REQUEUED, &[("process", "process")], lua_str, ".."),
    );
    lua += &format!(
        "local RECOVERED_LABEL = {}\n",
        lua_str(recovery::STINT_LABEL)
    );
    lua += &format!(
        "local function recovered_stint(process) return {} end\n",
        template(
            recovery::STINT_ENDED,
            &[("process", "process")],
            lua_str,
            ".."
        )
    );
    let finals: Vec<String> = JobState::ALL
        .into_iter()
        .filter(|s| s.is_final())
        .map(|s| format!("{} = true", s.as_str()))
        .collect();
    lua += &format!("local FINAL_STATE = {{{}}}\n", finals.join(", "));
    lua += &format!(
        "local CHILDREN_FINISHED = {}\n",
        lua_str(super::CHILDREN_FINISHED)
    );
    lua
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_join_text_and_expressions() {
        assert_eq!(
            template("a {n} b", &[("n", "x + 1")], sql_str, "||"),
            "'a ' || (x + 1) || ' b'"
        );
        assert_eq!(
            template("it's {p}", &[("p", "P")], lua_str, ".."),
            "'it\\'s ' .. (P)"
        );
        assert_eq!(template("plain", &[], sql_str, "||"), "'plain'");
    }

    #[test]
    fn the_sql_state_after_a_retry_lets_a_pending_command_win() {
        assert_eq!(
            sql_state_after(StintEnd::Failed, "control"),
            "CASE control WHEN 'pause' THEN 'paused' WHEN 'cancel' THEN 'cancelled' ELSE 'retrying' END"
        );
        assert_eq!(
            sql_state_after(StintEnd::Succeeded, "control"),
            "'succeeded'"
        );
        assert_eq!(sql_final_states(), "('succeeded', 'dead', 'cancelled')");
    }

    #[test]
    fn the_sql_recovery_of_a_stopping_process_counts_nothing() {
        let (count, state, reason) = sql_recovery("r", "c", "m", "p", "s");
        assert_eq!(count, "CASE WHEN s THEN r ELSE r + 1 END");
        assert!(
            state.contains("ELSE CASE WHEN s THEN 'enqueued' WHEN (r + 1) > (m) THEN 'dead'"),
            "{state}"
        );
        assert!(reason.contains("', which was stopping'"), "{reason}");
    }

    #[test]
    fn the_lua_rules_hold_every_end_and_the_recovery_verdict() {
        let lua = lua_rules();
        assert!(
            lua.contains("R = {[''] = 'retrying', ['pause'] = 'paused', ['cancel'] = 'cancelled'}"),
            "{lua}"
        );
        assert!(
            lua.contains("if (n) > (max) then return 'dead', 'poison pill: recovered ' .. (n)"),
            "{lua}"
        );
        assert!(
            lua.contains("if stopping then return 'enqueued', 'recovered from process ' .. (process) .. ', which was stopping', n - 1 end"),
            "{lua}"
        );
    }
}
