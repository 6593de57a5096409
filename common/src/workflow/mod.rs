//! The workflow model: KAI-Fusion's graph format, the node catalogue and save-time validation.

pub mod catalogue;
pub mod flow;
pub mod graph;
mod legacy_chains;
pub mod template;

pub use flow::{Edge, FlowData, FlowError, Node};
pub use graph::{Graph, GraphError, UnavailableNode};
