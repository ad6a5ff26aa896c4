//! `--set key=value` overrides, applied to the scenario's TOML before it is deserialised.

use super::ScenarioError;

/// Applies `key=value` overrides in order to a parsed scenario table.
///
/// The key is a dotted path (`rounds`, `privacy.noise_multiplier`); missing tables on
/// the way are created. The value is read as a TOML value (`2`, `0.8`, `true`,
/// `[32, 16]`, `{ kind = "iid" }`); anything that is not valid TOML is taken as a string,
/// so `dataset.kind=creditcard` needs no quotes. Unknown keys are caught when the table
/// is deserialised (every scenario table refuses unknown fields).
pub fn apply_overrides(table: &mut toml::Table, overrides: &[String]) -> Result<(), ScenarioError> {
    for arg in overrides {
        let (key, raw) = arg
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| !k.is_empty() && k.split('.').all(|s| !s.is_empty()))
            .ok_or_else(|| ScenarioError::OverrideSyntax { arg: arg.clone() })?;
        set_path(table, key, parse_value(raw))?;
    }
    Ok(())
}

/// Reads an override's value as TOML, or as a plain string when it is not TOML.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Sets `value` at the dotted `key`, creating intermediate tables.
fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ScenarioError> {
    let segments: Vec<&str> = key.split('.').collect();
    let (last, parents) = segments
        .split_last()
        .expect("a non-empty key has a last segment");
    let mut current = table;
    for segment in parents {
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            other => {
                return Err(ScenarioError::OverrideThroughValue {
                    key: key.to_string(),
                    segment: segment.to_string(),
                    found: other.type_str(),
                })
            }
        };
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn set(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn values_are_typed_and_tables_created() {
        let mut t = table("rounds = 20\n[privacy]\nmode = \"central\"\n");
        apply_overrides(
            &mut t,
            &set(&[
                "rounds=2",
                "privacy.noise_multiplier = 0.8",
                "privacy.secure_aggregation.enabled=true",
                "dataset.kind=creditcard",
                "model.hidden=[32, 16]",
            ]),
        )
        .unwrap();
        assert_eq!(t["rounds"].as_integer(), Some(2));
        assert_eq!(t["privacy"]["noise_multiplier"].as_float(), Some(0.8));
        assert_eq!(t["privacy"]["mode"].as_str(), Some("central"));
        assert_eq!(
            t["privacy"]["secure_aggregation"]["enabled"].as_bool(),
            Some(true)
        );
        assert_eq!(t["dataset"]["kind"].as_str(), Some("creditcard"));
        let hidden: Vec<i64> = t["model"]["hidden"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_integer().unwrap())
            .collect();
        assert_eq!(hidden, vec![32, 16]);
    }

    #[test]
    fn malformed_and_through_value_keys_are_named() {
        let mut t = table("rounds = 20\n");
        let err = apply_overrides(&mut t, &set(&["rounds"])).unwrap_err();
        assert!(err.to_string().contains("`rounds`"), "{err}");
        let err = apply_overrides(&mut t, &set(&["privacy..clip_norm=1"])).unwrap_err();
        assert!(err.to_string().contains("privacy..clip_norm"), "{err}");
        let err = apply_overrides(&mut t, &set(&["rounds.max=3"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "override `rounds.max`: `rounds` holds a value of type integer, not a table"
        );
    }
}
