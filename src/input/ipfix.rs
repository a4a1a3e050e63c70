//! TEMPORARY stand-in (batchio branch) so that `read_file` compiles before the
//! collector branch lands; the collector's real reader replaces this file at merge.

use std::path::Path;

use super::InputError;
use crate::record::Record;

/// Placeholder: refuses every file until the collector's reader is merged.
pub fn read(path: &Path) -> Result<Vec<Record>, InputError> {
    Err(InputError::UnknownFormat {
        path: path.to_path_buf(),
    })
}
