//! MovieLens readers: 100K (`u.data`, splits, `u.item` in Latin-1, `u.user`), 1M
//! (`ratings.dat` with `::`) and the newer `ratings.csv`.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use super::ratings::NO_COUNTRY;
use super::{source, DataError, Interaction, RatingsDataset, Vocabulary};

/// Which MovieLens file layout a ratings file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingsFormat {
    /// 100K `u.data` and its `uN.base`/`uN.test` splits: `user \t item \t rating \t time`.
    Tab,
    /// 1M/10M `ratings.dat`: `user::item::rating::time`.
    DoubleColon,
    /// 20M/25M/latest `ratings.csv`: header `userId,movieId,rating,timestamp`.
    Csv,
}

/// Reads a ratings file, interning ids into `vocab` (pass one vocabulary to every file
/// of a split so that indices agree).
pub fn read_ratings(
    path: &Path,
    format: RatingsFormat,
    vocab: &mut Vocabulary,
) -> Result<Vec<Interaction>, DataError> {
    let reader = source::open(path)?;
    let mut records = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|e| DataError::io(path, e))?;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = match format {
            RatingsFormat::Tab => line.split('\t').collect(),
            RatingsFormat::DoubleColon => line.split("::").collect(),
            RatingsFormat::Csv => {
                if line_no == 1 {
                    check_csv_header(path, line)?;
                    continue;
                }
                line.split(',').collect()
            }
        };
        records.push(parse_rating(path, line_no, &fields, vocab)?);
    }
    Ok(records)
}

fn check_csv_header(path: &Path, line: &str) -> Result<(), DataError> {
    let expected = ["userId", "movieId", "rating", "timestamp"];
    let found: Vec<String> = line.split(',').map(str::to_owned).collect();
    if found != expected {
        return Err(DataError::Header {
            path: path.into(),
            found,
            expected: expected.iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(())
}

fn parse_rating(
    path: &Path,
    line: u64,
    fields: &[&str],
    vocab: &mut Vocabulary,
) -> Result<Interaction, DataError> {
    let [user, item, rating, time] = fields else {
        return Err(DataError::malformed(
            path,
            line,
            format!("expected 4 fields, found {}", fields.len()),
        ));
    };
    let rating: f32 = rating.trim().parse().map_err(|_| {
        DataError::malformed(path, line, format!("rating {rating:?} is not a number"))
    })?;
    if !(0.0..=5.0).contains(&rating) {
        return Err(DataError::malformed(
            path,
            line,
            format!("rating {rating} is outside 0..=5"),
        ));
    }
    let timestamp: i64 = time.trim().parse().map_err(|_| {
        DataError::malformed(path, line, format!("timestamp {time:?} is not an integer"))
    })?;
    let user = user.trim();
    let item = item.trim();
    if user.is_empty() || item.is_empty() {
        return Err(DataError::malformed(path, line, "empty user or item id"));
    }
    Ok(Interaction {
        user: vocab.users.intern(user),
        item: vocab.items.intern(item),
        value: rating,
        timestamp,
        country: NO_COUNTRY,
    })
}

/// Reads a standard 100K split (`u1`..`u5`, `ua`, `ub`) from the `ml-100k` folder:
/// `(train, test)` sharing one vocabulary.
pub fn load_100k_split(
    dir: &Path,
    split: &str,
) -> Result<(RatingsDataset, RatingsDataset), DataError> {
    let known = ["u1", "u2", "u3", "u4", "u5", "ua", "ub"];
    if !known.contains(&split) {
        return Err(DataError::Invalid(format!(
            "unknown MovieLens 100K split {split:?}; expected one of {known:?}"
        )));
    }
    let mut vocab = Vocabulary::default();
    let train = read_ratings(
        &dir.join(format!("{split}.base")),
        RatingsFormat::Tab,
        &mut vocab,
    )?;
    let test = read_ratings(
        &dir.join(format!("{split}.test")),
        RatingsFormat::Tab,
        &mut vocab,
    )?;
    let vocab = Arc::new(vocab);
    Ok((
        RatingsDataset::new(train, Arc::clone(&vocab)),
        RatingsDataset::new(test, vocab),
    ))
}

/// A movie from `u.item`.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    /// MovieLens movie id.
    pub id: String,
    /// Title with year, decoded from Latin-1.
    pub title: String,
    /// The 19 genre flags in `u.genre` order.
    pub genres: Vec<bool>,
}

/// Reads `u.item` (`|`-separated, 24 fields, ISO-8859-1 text).
pub fn read_100k_items(path: &Path) -> Result<Vec<Movie>, DataError> {
    let mut reader = source::open(path)?;
    let mut movies = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        // Latin-1 maps each byte to the code point of the same value.
        let line: String = buf.iter().map(|&b| b as char).collect();
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        if fields.len() != 24 {
            return Err(DataError::malformed(
                path,
                line_no,
                format!("expected 24 fields, found {}", fields.len()),
            ));
        }
        let genres = fields[5..]
            .iter()
            .map(|f| match *f {
                "0" => Ok(false),
                "1" => Ok(true),
                other => Err(DataError::malformed(
                    path,
                    line_no,
                    format!("genre flag {other:?} is not 0 or 1"),
                )),
            })
            .collect::<Result<_, _>>()?;
        movies.push(Movie {
            id: fields[0].to_owned(),
            title: fields[1].to_owned(),
            genres,
        });
    }
    Ok(movies)
}

/// A user from `u.user`: the attributes a simulator can partition merchants by.
#[derive(Debug, Clone, PartialEq)]
pub struct UserProfile {
    /// MovieLens user id.
    pub id: String,
    /// Age in years.
    pub age: u32,
    /// `M` or `F`.
    pub gender: char,
    /// Occupation, one of `u.occupation`.
    pub occupation: String,
    /// US zip code as written (some are Canadian postcodes).
    pub zip: String,
}

/// Reads `u.user` (`id|age|gender|occupation|zip`).
pub fn read_100k_users(path: &Path) -> Result<Vec<UserProfile>, DataError> {
    let reader = source::open(path)?;
    let mut users = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|e| DataError::io(path, e))?;
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [id, age, gender, occupation, zip] = fields[..] else {
            return Err(DataError::malformed(
                path,
                line_no,
                format!("expected 5 fields, found {}", fields.len()),
            ));
        };
        let age = age.parse().map_err(|_| {
            DataError::malformed(path, line_no, format!("age {age:?} is not an integer"))
        })?;
        let gender = match gender {
            "M" => 'M',
            "F" => 'F',
            other => {
                return Err(DataError::malformed(
                    path,
                    line_no,
                    format!("gender {other:?} is not M or F"),
                ))
            }
        };
        users.push(UserProfile {
            id: id.to_owned(),
            age,
            gender,
            occupation: occupation.to_owned(),
            zip: zip.to_owned(),
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn three_formats_give_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let tab = write(
            &dir,
            "u.data",
            b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
        );
        let dat = write(
            &dir,
            "ratings.dat",
            b"196::242::3::881250949\n186::302::3::891717742\n",
        );
        let csv = write(
            &dir,
            "ratings.csv",
            b"userId,movieId,rating,timestamp\n196,242,3.0,881250949\n186,302,3.0,891717742\n",
        );
        let mut outs = Vec::new();
        for (p, f) in [
            (tab, RatingsFormat::Tab),
            (dat, RatingsFormat::DoubleColon),
            (csv, RatingsFormat::Csv),
        ] {
            let mut v = Vocabulary::default();
            outs.push(read_ratings(&p, f, &mut v).unwrap());
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(outs[0], outs[2]);
        assert_eq!(outs[0][1].user, 1);
        assert_eq!(outs[0][1].timestamp, 891717742);
    }

    #[test]
    fn a_bad_rating_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "u1.base", b"1\t1\t5\t874965758\n1\t2\tx\t876893171\n");
        let err = read_ratings(&p, RatingsFormat::Tab, &mut Vocabulary::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("u1.base:2:") && msg.contains("\"x\""), "{msg}");
    }

    #[test]
    fn latin1_titles_decode() {
        let dir = tempfile::tempdir().unwrap();
        let mut line = b"1|Mis\xe9rables, Les (1995)|01-Jan-1995||http://x|".to_vec();
        line.extend_from_slice("0|".repeat(18).as_bytes());
        line.extend_from_slice(b"1\n");
        let p = write(&dir, "u.item", &line);
        let movies = read_100k_items(&p).unwrap();
        assert_eq!(movies[0].title, "Misérables, Les (1995)");
        assert!(movies[0].genres[18]);
    }
}
