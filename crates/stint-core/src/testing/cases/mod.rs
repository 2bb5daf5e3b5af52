//! The conformance cases, by topic. Every case is `pub async fn
//! name(store: Arc<dyn Store>)`, takes a fresh, empty store and panics on
//! the first rule the store breaks. They are re-exported here flat so that
//! `conformance_tests!` (and a store crate calling them one by one) can name
//! them as `testing::cases::name`.

pub mod admin;
pub mod completion;
pub mod flow;
pub mod leases;
pub mod lifecycle;
pub mod maintenance;
pub mod metrics;
pub mod operator;
pub mod periodic;
pub mod push_fetch;
pub mod rate;
pub mod snooze;
pub mod split;
pub mod stats;
pub mod unique;

pub use admin::*;
pub use completion::*;
pub use flow::*;
pub use leases::*;
pub use lifecycle::*;
pub use maintenance::*;
pub use metrics::*;
pub use operator::*;
pub use periodic::*;
pub use push_fetch::*;
pub use rate::*;
pub use snooze::*;
pub use split::*;
pub use stats::*;
pub use unique::*;
