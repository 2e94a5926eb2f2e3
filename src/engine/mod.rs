//! The incremental engine: `llmd build`, `llmd why`, `llmd status`.
//!
//! * [`planner`] — pure derivations (salsa): files → merged configs → rendered plans.
//! * [`key`] — node keys and canonical leaves; [`reason`] — why a node executes.
//! * [`graph`] — the build graph of an experiment: node ids, keys, manifests.
//! * [`build`] — deciding (fresh, or runs because …) and executing nodes in order.
//! * [`materialize`] — cached outputs copied into the workspace, tracked by stat.
//! * [`progress`] — a status line while a long node runs.
//! * [`why`] — explaining the last build from its journal.

pub mod build;
pub mod graph;
pub mod key;
pub mod materialize;
pub mod planner;
pub mod progress;
pub mod reason;
pub mod why;
