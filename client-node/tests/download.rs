//! The download helper against a file server on loopback (no test reaches the internet).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use hansa_node::data::download::{fetch, sha256_of};

use hansa_node::data::DataError;

const BODY: &[u8] = b"user\titem\trating\n1\t2\t5\n";
// `printf 'user\titem\trating\n1\t2\t5\n' | sha256sum`
const BODY_SHA256: &str = "82eb160416054033805893f6a64949ae166bd269afbd8d3cc708b466bd22e978";
/// The digest of some other file: what a tampered or truncated body fails against.
const OTHER_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Serves `body` with status 200 to `requests` connections, then stops.
fn serve(body: &'static [u8], requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body).unwrap();
        }
    });
    format!("http://{addr}/ml-100k/u.data")
}

#[test]
fn a_good_download_lands_in_the_cache_and_is_reused() {
    let url = serve(BODY, 1);
    let cache = tempfile::tempdir().unwrap();
    let path = fetch(&url, cache.path(), "u.data", &BODY_SHA256.to_uppercase()).unwrap();
    assert_eq!(path, cache.path().join("u.data"));
    assert_eq!(std::fs::read(&path).unwrap(), BODY);
    assert_eq!(sha256_of(&path).unwrap(), BODY_SHA256);
    // The server has stopped: a second call must be served from the cache.
    assert_eq!(
        fetch(&url, cache.path(), "u.data", BODY_SHA256).unwrap(),
        path
    );
    let names: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["u.data"]);
}

#[test]
fn a_checksum_mismatch_is_named_and_leaves_no_file() {
    let url = serve(BODY, 1);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&url, cache.path(), "u.data", OTHER_SHA256).unwrap_err();
    match &err {
        DataError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, OTHER_SHA256);
            assert_eq!(actual, BODY_SHA256);
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn an_unreachable_server_is_a_download_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&format!("http://{addr}/x"), cache.path(), "x", BODY_SHA256).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err}");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}
