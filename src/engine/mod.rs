//! The incremental engine: `llmd build`, `llmd why`, `llmd status`.
//!
//! * [`planner`] — pure derivations (salsa): files → merged configs → rendered plans.
//! * [`key`] — node keys and canonical leaves; [`reason`] — why a node executes.
//! * [`graph`] — the build graph of an experiment: node ids, keys, manifests.
//! * [`build`] — `llmd build`: options, the per-node report, deciding then executing.
//! * [`decide`] — the graph of an experiment, every node fresh or run (and why).
//! * [`execute`] — executing decided nodes through the executors in `phases`, recording
//!   each in the store.
//! * [`materialize`] — cached outputs copied into the workspace, tracked by stat.
//! * [`schedule`] — `-j`: what each setup holds, the capacity pool, measurement isolation.
//! * [`interrupt`] — Ctrl-C / SIGTERM: cancel what is in flight, keep the cache resumable.
//! * [`progress`] — the nodes in flight (a live board on a terminal, plain lines elsewhere).
//! * [`why`] — explaining the last build from its journal.

pub mod build;
pub mod decide;
pub mod execute;
pub mod graph;
pub mod interrupt;
pub mod key;
pub mod materialize;
pub mod planner;
pub mod progress;
pub mod reason;
pub mod schedule;
pub mod why;
