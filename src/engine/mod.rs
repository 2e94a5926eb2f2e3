//! The incremental engine: `llmd build`, `llmd why`, `llmd status`.
//!
//! * [`planner`] — pure derivations (salsa): files → merged configs → rendered plans.
//! * [`key`] — node keys and canonical leaves; [`reason`] — why a node executes.
//! * [`graph`] — the build graph of an experiment: node ids, keys, manifests.
//! * [`build`] — deciding (fresh, or runs because …) and executing nodes in order.
//! * [`why`] — explaining the last build from its journal.

pub mod build;
pub mod graph;
pub mod key;
pub mod planner;
pub mod reason;
pub mod why;
