//! UCI Online Retail reader: invoice lines → implicit customer × product feedback.
//!
//! Rules, applied in this order (each row is counted under the first rule it meets):
//! 1. rows without a `CustomerID` are dropped (the shopper is unknown);
//! 2. cancellations (an `InvoiceNo` starting with `C`) are dropped;
//! 3. rows with `Quantity ≤ 0` or `UnitPrice ≤ 0` (returns, stock write-offs, free
//!    adjustments) are dropped;
//! 4. non-product codes are dropped: a product's `StockCode` starts with five digits
//!    (`85123A`, `22423`); `POST`, `M`, `D`, `C2`, `DOT`, `BANK CHARGES`, `AMAZONFEE`,
//!    `gift_0001_10`, `PADS`, ... are postage, fees, manual entries and vouchers.
//!
//! Each kept row becomes one [`Interaction`] whose value is the quantity bought.

use std::path::Path;
use std::sync::Arc;

use super::{source, DataError, Interaction, RatingsDataset, Vocabulary};

const HEADER: [&str; 8] = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
];

/// How many rows each rule dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetailLoadStats {
    /// Data rows read (header excluded).
    pub rows: u64,
    /// Dropped by rule 1: no customer id.
    pub no_customer: u64,
    /// Dropped by rule 2: cancellation invoice.
    pub cancellations: u64,
    /// Dropped by rule 3: quantity or unit price not positive.
    pub non_positive: u64,
    /// Dropped by rule 4: stock code of postage, fees or vouchers.
    pub non_product: u64,
    /// Rows kept as interactions.
    pub kept: u64,
}

/// Reads `online_retail.csv` (gzip or plain), streaming, with the module's rules.
pub fn read_online_retail(path: &Path) -> Result<(RatingsDataset, RetailLoadStats), DataError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(source::open(path)?);
    check_header(path, &mut csv)?;

    let mut vocab = Vocabulary::default();
    let mut stats = RetailLoadStats::default();
    let mut records = Vec::new();
    let mut row = csv::StringRecord::new();
    loop {
        let more = csv.read_record(&mut row).map_err(|e| csv_error(path, &e))?;
        if !more {
            break;
        }
        let line = row.position().map_or(0, |p| p.line());
        stats.rows += 1;
        if let Some(r) = parse_row(path, line, &row, &mut vocab, &mut stats)? {
            records.push(r);
            stats.kept += 1;
        }
    }
    Ok((RatingsDataset::new(records, Arc::new(vocab)), stats))
}

fn check_header<R: std::io::Read>(path: &Path, csv: &mut csv::Reader<R>) -> Result<(), DataError> {
    let found = csv.headers().map_err(|e| csv_error(path, &e))?;
    if found.iter().ne(HEADER.iter().copied()) {
        return Err(DataError::Header {
            path: path.into(),
            found: found.iter().map(str::to_owned).collect(),
            expected: HEADER.iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(())
}

fn csv_error(path: &Path, e: &csv::Error) -> DataError {
    let line = e.position().map_or(0, |p| p.line());
    DataError::malformed(path, line, e.to_string())
}

fn parse_row(
    path: &Path,
    line: u64,
    row: &csv::StringRecord,
    vocab: &mut Vocabulary,
    stats: &mut RetailLoadStats,
) -> Result<Option<Interaction>, DataError> {
    if row.len() != HEADER.len() {
        return Err(DataError::malformed(
            path,
            line,
            format!("expected 8 fields, found {}", row.len()),
        ));
    }
    let field = |i: usize| row.get(i).unwrap_or("");
    let bad = |what: &str, value: &str| {
        DataError::malformed(path, line, format!("{what} {value:?} is not valid"))
    };

    let customer = field(6).trim();
    if customer.is_empty() {
        stats.no_customer += 1;
        return Ok(None);
    }
    if field(0).starts_with('C') {
        stats.cancellations += 1;
        return Ok(None);
    }
    let quantity: f32 = field(3)
        .trim()
        .parse()
        .map_err(|_| bad("Quantity", field(3)))?;
    let price: f64 = field(5)
        .trim()
        .parse()
        .map_err(|_| bad("UnitPrice", field(5)))?;
    if quantity <= 0.0 || price <= 0.0 {
        stats.non_positive += 1;
        return Ok(None);
    }
    let code = field(1).trim();
    if !is_product_code(code) {
        stats.non_product += 1;
        return Ok(None);
    }

    // CustomerID is written as a float ("17850.0"); key customers by the integer part.
    let customer = customer.strip_suffix(".0").unwrap_or(customer);
    let timestamp = parse_datetime(field(4)).ok_or_else(|| bad("InvoiceDate", field(4)))?;
    let country = u16::try_from(vocab.countries.intern(field(7).trim()))
        .map_err(|_| bad("Country", field(7)))?;
    Ok(Some(Interaction {
        user: vocab.users.intern(customer),
        item: vocab.items.intern(code),
        value: quantity,
        timestamp,
        country,
    }))
}

/// True for a product stock code: five leading ASCII digits (rule 4).
pub fn is_product_code(code: &str) -> bool {
    code.len() >= 5 && code.as_bytes()[..5].iter().all(u8::is_ascii_digit)
}

/// Parses `YYYY-MM-DD HH:MM:SS` (also `YYYY-MM-DD HH:MM`) to seconds since 1970-01-01 00:00.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm) = (t.next()??, t.next()??);
    let ss = t.next().unwrap_or(Some(0))?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_unix_time() {
        // `date -u -d '2010-12-01 08:26:00' +%s` prints 1291191960.
        assert_eq!(parse_datetime("2010-12-01 08:26:00"), Some(1_291_191_960));
        assert_eq!(parse_datetime("1970-01-01 00:00"), Some(0));
        assert_eq!(parse_datetime("2011-13-01 00:00:00"), None);
    }

    #[test]
    fn product_codes() {
        for code in ["85123A", "22423", "15056BL"] {
            assert!(is_product_code(code), "{code}");
        }
        for code in [
            "POST",
            "M",
            "BANK CHARGES",
            "C2",
            "gift_0001_10",
            "DCGS0076",
            "1234",
        ] {
            assert!(!is_product_code(code), "{code}");
        }
    }

    #[test]
    fn rules_drop_and_count_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(
            &p,
            "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
             536365,85123A,\"HANGER, WHITE\",6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n\
             536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,,United Kingdom\n\
             C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n\
             536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.0,12583.0,France\n\
             536414,22139,,-56,2010-12-01 11:52:00,0.0,13000.0,United Kingdom\n\
             536370,22728,ALARM CLOCK,24,2010-12-01 08:45:00,3.75,12583.0,France\n",
        )
        .unwrap();
        let (data, stats) = read_online_retail(&p).unwrap();
        assert_eq!(
            stats,
            RetailLoadStats {
                rows: 6,
                no_customer: 1,
                cancellations: 1,
                non_positive: 1,
                non_product: 1,
                kept: 2
            }
        );
        assert_eq!(data.vocab.users.ids(), ["17850", "12583"]);
        assert_eq!(data.vocab.countries.ids(), ["United Kingdom", "France"]);
        assert_eq!(data.records[1].value, 24.0);
        assert_eq!(data.records[1].country, 1);
    }

    #[test]
    fn a_bad_quantity_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(
            &p,
            "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
             536365,85123A,X,six,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n",
        )
        .unwrap();
        let msg = read_online_retail(&p).unwrap_err().to_string();
        assert!(
            msg.contains("r.csv:2:") && msg.contains("Quantity"),
            "{msg}"
        );
    }
}
