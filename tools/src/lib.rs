//! Shared pieces of the operator and trader tools: fixed-point formatting and parsing of
//! amounts (no floats anywhere), and the demo exchange's setup.

pub mod demo;
pub mod salvage;

pub use bourse_engine::decimal as fixed;
