//! The one shape of an input error: which field is wrong, and what to do about it. Snapshots,
//! scheduler configurations and policies all report their bad values this way, so the CLI,
//! the controller's Events and the CRD status print them alike: `path: message`.

use std::fmt;

/// A bad value: the field's path (`spec.containers[0].resources.requests.cpu`,
/// `profiles[0].pluginConfig[1].args.scoringStrategy.resources[0].weight`) and the problem,
/// phrased so the reader knows the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An error of a serde decode, at the path `serde_path_to_error` tracked; `root` names
    /// the document when the error is not inside a field.
    pub fn from_serde<E: fmt::Display>(e: serde_path_to_error::Error<E>, root: &str) -> FieldError {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde_json appends the position; the path already says where.
        let message = message.split(" at line ").next().unwrap_or_default();
        FieldError::new(if path == "." { root } else { &path }, message)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}
