//! ULB card-fraud reader (`creditcard.csv`: `Time,V1..V28,Amount,Class`, quoted header
//! and class values), full file or the shared subsample, gzip read transparently.

use std::path::Path;

use super::{source, DataError};

/// Model inputs per transaction: V1..V28 and `ln(1 + Amount)`.
pub const NUM_FRAUD_FEATURES: usize = 29;

/// One card transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transaction {
    /// Seconds since the first transaction of the full file.
    pub time_s: f32,
    /// The 28 PCA components V1..V28 (the raw features are confidential).
    pub pca: [f32; 28],
    /// Amount in euros.
    pub amount: f32,
    /// `Class == "1"`.
    pub fraud: bool,
}

impl Transaction {
    /// The model's inputs: V1..V28, then `ln(1 + Amount)` (amounts are heavy-tailed).
    pub fn features(&self) -> [f32; NUM_FRAUD_FEATURES] {
        let mut x = [0.0; NUM_FRAUD_FEATURES];
        x[..28].copy_from_slice(&self.pca);
        x[28] = self.amount.max(0.0).ln_1p();
        x
    }
}

/// Transactions in file (time) order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FraudDataset {
    /// The transactions.
    pub records: Vec<Transaction>,
}

impl FraudDataset {
    /// The part whose records satisfy `keep`.
    pub fn filter(&self, keep: impl Fn(&Transaction) -> bool) -> Self {
        Self {
            records: self.records.iter().copied().filter(|r| keep(r)).collect(),
        }
    }

    /// The records at `indices`, in that order (for random splits and Dirichlet
    /// partitions). Panics if an index is out of range: indices come from this data set.
    pub fn select(&self, indices: &[usize]) -> Self {
        Self {
            records: indices.iter().map(|&i| self.records[i]).collect(),
        }
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Number of frauds.
    pub fn num_frauds(&self) -> usize {
        self.records.iter().filter(|r| r.fraud).count()
    }
}

fn expected_header() -> Vec<String> {
    let mut h = vec!["Time".to_owned()];
    h.extend((1..=28).map(|i| format!("V{i}")));
    h.push("Amount".into());
    h.push("Class".into());
    h
}

/// Reads `creditcard.csv` or the shared `creditcard_sample.csv.gz`, streaming.
pub fn read_creditcard(path: &Path) -> Result<FraudDataset, DataError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(source::open(path)?);
    let expected = expected_header();
    let found = csv
        .headers()
        .map_err(|e| DataError::malformed(path, 1, e.to_string()))?;
    if found.iter().ne(expected.iter().map(String::as_str)) {
        return Err(DataError::Header {
            path: path.into(),
            found: found.iter().map(str::to_owned).collect(),
            expected,
        });
    }

    let mut records = Vec::new();
    let mut row = csv::StringRecord::new();
    loop {
        let more = csv.read_record(&mut row).map_err(|e| {
            DataError::malformed(path, e.position().map_or(0, |p| p.line()), e.to_string())
        })?;
        if !more {
            break;
        }
        let line = row.position().map_or(0, |p| p.line());
        records.push(parse_row(path, line, &row, &expected)?);
    }
    Ok(FraudDataset { records })
}

fn parse_row(
    path: &Path,
    line: u64,
    row: &csv::StringRecord,
    names: &[String],
) -> Result<Transaction, DataError> {
    if row.len() != 31 {
        return Err(DataError::malformed(
            path,
            line,
            format!("expected 31 fields, found {}", row.len()),
        ));
    }
    let number = |i: usize| -> Result<f32, DataError> {
        let raw = &row[i];
        match raw.trim().parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(DataError::malformed(
                path,
                line,
                format!("{} {raw:?} is not a finite number", names[i]),
            )),
        }
    };
    let mut pca = [0.0; 28];
    for (k, v) in pca.iter_mut().enumerate() {
        *v = number(k + 1)?;
    }
    let fraud = match row[30].trim() {
        "0" => false,
        "1" => true,
        other => {
            return Err(DataError::malformed(
                path,
                line,
                format!("Class {other:?} is not \"0\" or \"1\""),
            ))
        }
    };
    Ok(Transaction {
        time_s: number(0)?,
        pca,
        amount: number(29)?,
        fraud,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> String {
        let names: Vec<String> = expected_header()
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        names.join(",")
    }

    #[test]
    fn quoted_header_and_class_parse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        let v: Vec<String> = (1..=28).map(|i| format!("{}", i as f32 / 10.0)).collect();
        let body = format!(
            "{}\n0,{},149.62,\"0\"\n406,{},0,\"1\"\n",
            header(),
            v.join(","),
            v.join(",")
        );
        std::fs::write(&p, body).unwrap();
        let data = read_creditcard(&p).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data.num_frauds(), 1);
        assert_eq!(data.records[1].time_s, 406.0);
        assert_eq!(data.records[0].pca[27], 2.8);
        let x = data.records[0].features();
        assert!((x[28] - 150.62f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn a_bad_class_names_line_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        let v = vec!["0"; 28].join(",");
        std::fs::write(&p, format!("{}\n0,{v},1,\"0\"\n1,{v},1,\"2\"\n", header())).unwrap();
        let msg = read_creditcard(&p).unwrap_err().to_string();
        assert!(
            msg.contains("c.csv:3:") && msg.contains("Class \"2\""),
            "{msg}"
        );
    }
}
