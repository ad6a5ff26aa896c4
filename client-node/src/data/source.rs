//! Opening data files: gzip is detected from its magic bytes and read transparently.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::DataError;

/// Opens `path` for buffered streaming reads, decompressing it if it is gzip.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let decoder: Box<dyn Read + Send> = Box::new(MultiGzDecoder::new(reader));
        Ok(Box::new(BufReader::with_capacity(1 << 16, decoder)))
    } else {
        Ok(Box::new(reader))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gzip_and_plain_files_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.csv");
        std::fs::write(&plain, b"x,y\n1,2\n").unwrap();
        let gz = dir.path().join("a.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"x,y\n1,2\n").unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        for p in [&plain, &gz] {
            let mut s = String::new();
            open(p).unwrap().read_to_string(&mut s).unwrap();
            assert_eq!(s, "x,y\n1,2\n");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = open(Path::new("/nonexistent/u.data")).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/u.data"), "{err}");
    }
}
