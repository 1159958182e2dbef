//! From an OpenAPI 3.0 / 3.1 description to a route table, and back:
//! `rolegate import openapi` ([`import()`]) writes a `[[routes]]` table per
//! operation from the operations' security requirements, and `rolegate
//! check --openapi` ([`coverage()`]) holds a table against the description
//! with the gateway's own matcher and verdict. Never on the request path.
//!
//! - `document`: YAML / JSON text → the tree, `$ref`s, the operations;
//! - `template`: path templates → path patterns, their order, example paths;
//! - `import`: operations → routes (security, `x-rolegate`), checked by the
//!   config parser and compiler;
//! - `coverage`: the three kinds of finding.

pub mod coverage;
pub mod document;
pub mod import;
pub mod template;

pub use coverage::{coverage, Coverage, Finding};
pub use document::{Document, SpecError, Where};
pub use import::{import, Alternative, ImportOptions, Imported, ImportedRoute, SpecAccess};
