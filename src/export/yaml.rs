//! The YAML writer of the proposal and tracing-policy formats.
use serde::Serialize;

use super::error::ExportError;

/// Multi-document YAML: serde_yaml's serializer writes one `---`-separated
/// document per value.
pub fn to_yaml_documents<T: Serialize>(objects: &[T]) -> Result<String, ExportError> {
    let mut buf = Vec::new();
    {
        let mut ser = serde_yaml::Serializer::new(&mut buf);
        for o in objects {
            o.serialize(&mut ser)?;
        }
    }
    // serde_yaml only ever writes UTF-8.
    String::from_utf8(buf)
        .map_err(|e| ExportError::Yaml(<serde_yaml::Error as serde::ser::Error>::custom(e)))
}
