//! Fetching a data set from its publisher into a cache, checked against a sha256.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::DataError;

/// Largest download accepted, in bytes (the full card-fraud file is 151 MB).
pub const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;

/// Returns `cache_dir/file_name`, downloading it from `url` first unless a file with the
/// expected sha256 (hex, case-insensitive) is already there.
///
/// The body is streamed into a temporary file in `cache_dir` while it is hashed; only a
/// body with the right digest is renamed into place (atomic on one file system). On a
/// mismatch the temporary file is removed and [`DataError::ChecksumMismatch`] returned.
pub fn fetch(
    url: &str,
    cache_dir: &Path,
    file_name: &str,
    sha256_hex: &str,
) -> Result<PathBuf, DataError> {
    let expected = sha256_hex.to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DataError::Invalid(format!(
            "{sha256_hex:?} is not a sha256 in hex"
        )));
    }
    if file_name.is_empty() || file_name.contains(['/', '\\']) || file_name.starts_with('.') {
        return Err(DataError::Invalid(format!(
            "{file_name:?} is not a plain file name"
        )));
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| DataError::io(cache_dir, e))?;
    let target = cache_dir.join(file_name);
    if target.exists() && sha256_of(&target)? == expected {
        return Ok(target);
    }

    let partial = cache_dir.join(format!(".{file_name}.partial"));
    let result = download_into(url, &partial).and_then(|actual| {
        if actual == expected {
            std::fs::rename(&partial, &target).map_err(|e| DataError::io(&target, e))
        } else {
            Err(DataError::ChecksumMismatch {
                url: url.to_owned(),
                expected: expected.clone(),
                actual,
            })
        }
    });
    if result.is_err() {
        // Best effort: the partial file may not exist if the request itself failed.
        let _ = std::fs::remove_file(&partial);
    }
    result.map(|()| target)
}

/// Streams `url` into `path`, returning the hex sha256 of the bytes written.
fn download_into(url: &str, path: &Path) -> Result<String, DataError> {
    let failed = |reason: String| DataError::Download {
        url: url.to_owned(),
        reason,
    };
    let response = ureq::get(url).call().map_err(|e| failed(e.to_string()))?;
    let mut body = response.into_reader().take(MAX_DOWNLOAD_BYTES + 1);
    let mut file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_DOWNLOAD_BYTES {
            return Err(failed(format!("body exceeds {MAX_DOWNLOAD_BYTES} bytes")));
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(path, e))?;
    }
    file.sync_all().map_err(|e| DataError::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Hex sha256 of a file's bytes.
pub fn sha256_of(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| DataError::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}
