//! `export`: learned profiles as the documented JSON, as Kubernetes policy
//! proposals, or as Tetragon `TracingPolicyNamespaced` allow-lists.
//!
//! Every renderer here is a pure function from `&[Profile]` to typed serde
//! structs; the text is produced by serde_json / serde_yaml only, never by
//! templates, so a hostile executable path is carried exactly and cannot forge
//! structure. The CLI shell is `cli::export_cmd`.
//!
//! Where each part lives:
//! - `options`: what goes into an allow-list (probes, sessions) and how a
//!   policy enforces it; `enforcement`: policy mode and kernel hook.
//! - `grouping`: profiles grouped per workload, host learners set apart.
//! - `annotations`: what an object says about its learners.
//! - `k8s`: `ObjectMeta`, `LabelSelector`, the workload's pod selector;
//!   `selector`: selectors learned from the pods' labels (`--selector`).
//! - `packing`: one policy per namespace (`--group namespace`); `limits`:
//!   Tetragon's per-node policy count and kernel memory, estimated.
//! - `names`: DNS-1123 object names, label keys and values, the hash suffix.
//! - `json`, `proposal`, `tracing_policy`: the three formats; `yaml`: the
//!   multi-document writer.
//! - `input`, `merge`, `filter`: `--input` files, their merge, `--workload`.
//! - `warnings`: the stderr summary lines (details with `--verbose`).
pub mod annotations;
pub mod enforcement;
pub mod error;
pub mod filter;
pub mod grouping;
pub mod hook_lists;
pub mod host_policy;
pub mod input;
pub mod json;
pub mod k8s;
pub mod limits;
pub mod merge;
pub mod names;
pub mod options;
pub mod packing;
pub mod policy_spec;
pub mod proposal;
pub mod selection_warnings;
pub mod selector;
pub mod shapes;
pub mod tracing_policy;
pub mod view_warnings;
pub mod warnings;
pub mod yaml;

pub use enforcement::{PolicyHook, PolicyMode};
pub use error::ExportError;
pub use grouping::{group_by_workload, in_namespace, Skip};
pub use limits::Limits;
pub use names::{is_dns1123_subdomain, is_label_value, object_name};
pub use options::{ExecKind, ExportOptions, GroupBy, SelectorMode, DEFAULT_WORKLOAD_LABEL};
pub use yaml::to_yaml_documents;
