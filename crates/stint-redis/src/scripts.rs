//! The Lua scripts: every state transition is one of them, run atomically
//! by Redis (by SHA, loaded again when Redis has forgotten it, as after a
//! restart). Each is the lifecycle rules rendered by stint-core
//! (`stint_core::lifecycle::render::lua_rules`: `AFTER_STINT`,
//! `recovery_verdict`, `recovered_stint`, `RECOVERED_LABEL`,
//! `FINAL_STATE`), then `lua/prelude.lua` and `lua/flow.lua` (flow
//! control), then its own file.

use std::sync::LazyLock;

use redis::Script;
use stint_core::lifecycle::render;

/// The rules and the prelude every script starts with.
static PRELUDE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}\n{}\n{}\n",
        render::lua_rules(),
        include_str!("lua/prelude.lua"),
        include_str!("lua/flow.lua")
    )
});

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(&format!("{}{}", *PRELUDE, include_str!($file))));
    };
}

// With the jid checks of lua/jids.lua first.
pub(crate) static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}\n{}",
        *PRELUDE,
        include_str!("lua/jids.lua"),
        include_str!("lua/fetch.lua")
    ))
});
pub(crate) static UNREADABLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}\n{}",
        *PRELUDE,
        include_str!("lua/jids.lua"),
        include_str!("lua/unreadable.lua")
    ))
});
script!(PUSH_UNIQUE, "lua/push_unique.lua");
script!(UNPARK, "lua/unpark.lua");
script!(LIMITS, "lua/limits.lua");
script!(CHECKPOINT, "lua/checkpoint.lua");
script!(COMPLETE, "lua/complete.lua");
script!(RECOVER, "lua/recover.lua");
script!(REGISTER, "lua/register.lua");
script!(HEARTBEAT, "lua/heartbeat.lua");
script!(PROCESSES, "lua/processes.lua");
script!(DUE, "lua/due.lua");
script!(PROMOTE, "lua/promote.lua");
script!(JOB, "lua/job.lua");
script!(COMMAND, "lua/command.lua");
script!(CONTROLS, "lua/controls.lua");
script!(SPLIT, "lua/split.lua");
script!(CLEAR_QUEUE, "lua/clear_queue.lua");
script!(PROCESS_COMMAND, "lua/process_command.lua");
script!(HAND_BACK, "lua/hand_back.lua");
script!(STOPPING, "lua/stopping.lua");

/// The scripts that read where a job is (`lua/job.lua`, as the function
/// `job_where({jid})`, and `lua/run_state.lua`) before their own part.
macro_rules! script_finding_jobs {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(&format!(
                "{}local function job_where(ARGV)\n{}\nend\n{}\n{}",
                *PRELUDE,
                include_str!("lua/job.lua"),
                include_str!("lua/run_state.lua"),
                include_str!($file)
            ))
        });
    };
}

script_finding_jobs!(TICK, "lua/tick.lua");
script_finding_jobs!(SCHEDULES, "lua/schedules.lua");
