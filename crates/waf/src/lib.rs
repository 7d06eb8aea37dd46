//! rampart's web application firewall: an engine for the part of ModSecurity's rule
//! language (SecLang) that the OWASP Core Rule Set uses, so the CRS rule files load
//! unmodified. Built in rooms, each depending only on the ones before it:
//!
//! - [`seclang`]: the file syntax: directives with their line numbers, continuation
//!   lines, quoting; a rule's targets, operator and actions split as SecLang splits them.
//! - [`model`]: the typed rule (targets, operator, transformations, actions); anything
//!   the engine does not support is an error, never skipped.
//! - [`operator`]: the operators, compiled when a rule loads (`@rx` in linear time).
//! - [`transform`]: the transformations (`t:`), bytes to bytes, as ModSecurity v2 has
//!   them.
//! - [`plan`]: a chain's compiled form (metadata, transformation lists, selector
//!   regexes), worked out when rules load so the engine does not per request.
//! - [`load`]: a rule set from its files (crs-setup, then the rules in order), the
//!   directives that change rules defined before them, and errors with file and line.
//! - [`engine`]: a rule set run over one request's variables (phases, chains,
//!   `setvar`, `skipAfter`, `ctl`, macros, the disruptive decision).
//! - [`request`]: those variables from an HTTP request's parts.

pub mod engine;
pub mod load;
pub mod model;
pub mod operator;
pub mod plan;
pub mod request;
pub mod seclang;
pub mod transform;

pub use load::{LoadError, RuleSet};
