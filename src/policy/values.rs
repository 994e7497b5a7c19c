//! Typed policy values that are written as text: Go durations (`10m`), budget node counts
//! (`"3"`, `"10%"`) and cron schedules. Each is parsed once, when the policy is read — a bad
//! one fails deserialisation at its field's path — and keeps its text so the policy
//! serialises back as the user wrote it.

use super::schedule::{Schedule, parse_duration};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A value parsed from policy text.
pub trait FromText: Sized {
    fn from_text(text: &str) -> Result<Self, String>;

    /// The CRD's OpenAPI schema of the text: what the API server checks before stowage reads it.
    fn schema() -> Schema;

    /// Its name in the schema.
    fn schema_name() -> &'static str;
}

impl FromText for Duration {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text).map_err(|e| format!("not a duration: {e}"))
    }

    fn schema() -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(0|([0-9]+(\\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+)$",
            "description": "A Go duration: 90s, 10m, 1h30m."
        })
    }

    fn schema_name() -> &'static str {
        "GoDuration"
    }
}

impl FromText for Schedule {
    fn from_text(text: &str) -> Result<Self, String> {
        Schedule::parse(text)
    }

    fn schema() -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]+( [^ ]+){4})$",
            "description": "A five-field cron schedule in UTC (minute hour day-of-month month day-of-week) or @daily, @hourly…"
        })
    }

    fn schema_name() -> &'static str {
        "CronSchedule"
    }
}

/// A value and the text it was parsed from; equal when the texts are.
#[derive(Clone)]
pub struct Text<T> {
    text: String,
    value: T,
}

/// `10m`, `1h30m`, `0`.
pub type GoDuration = Text<Duration>;
/// A budget's cron `schedule`.
pub type Cron = Text<Schedule>;

impl<T> Text<T> {
    pub fn value(&self) -> &T {
        &self.value
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl<T: FromText> Text<T> {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Text {
            value: T::from_text(text)?,
            text: text.to_string(),
        })
    }
}

impl GoDuration {
    /// A duration known to be valid, for defaults.
    pub fn known(text: &str, value: Duration) -> GoDuration {
        debug_assert_eq!(parse_duration(text).ok(), Some(value));
        Text {
            text: text.into(),
            value,
        }
    }

    pub fn get(&self) -> Duration {
        self.value
    }
}

impl<T> PartialEq for Text<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<T> fmt::Debug for Text<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl<T> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de, T: FromText> Deserialize<'de> for Text<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML users write `nodes: 0` or `for: 0` unquoted; take numbers as their text.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
        };
        Text::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl<T: FromText> JsonSchema for Text<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name().into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        T::schema()
    }
}

/// A budget's `nodes` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetNodes {
    Count(u64),
    Percent(u64),
}

impl FromText for BudgetNodes {
    fn from_text(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: u64 = p
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage (e.g. \"10%\")"))?;
            if v > 100 {
                return Err(format!("{s:?}: a percentage must be between 0% and 100%"));
            }
            Ok(BudgetNodes::Percent(v))
        } else {
            s.parse().map(BudgetNodes::Count).map_err(|_| {
                format!("{s:?} is neither a node count (\"3\") nor a percentage (\"10%\")")
            })
        }
    }

    fn schema() -> Schema {
        // A count may be written as a number; a string must be a count or a percentage.
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "maxLength": 8,
            "x-kubernetes-validations": [{
                "rule": "type(self) == int ? self >= 0 : self.matches('^([0-9]+|(100|[1-9]?[0-9])%)$')",
                "message": "must be a node count (\"3\") or a percentage between 0% and 100% (\"10%\")"
            }],
            "description": "Nodes: a count (\"3\") or a percentage of the managed nodes (\"10%\")."
        })
    }

    fn schema_name() -> &'static str {
        "BudgetNodes"
    }
}

impl BudgetNodes {
    /// Nodes allowed out of `total`; percentages round up, as Karpenter's budgets do.
    pub fn of(self, total: usize) -> usize {
        match self {
            BudgetNodes::Count(n) => n as usize,
            BudgetNodes::Percent(p) => (total as u64 * p).div_ceil(100) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_round_trip_and_refuse_bad_input() {
        let d: GoDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d.get(), Duration::from_secs(5400));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        let zero: GoDuration = serde_json::from_str("0").unwrap();
        assert_eq!(zero.get(), Duration::ZERO);
        let err = serde_json::from_str::<GoDuration>("\"ten\"").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");

        let n: Text<BudgetNodes> = serde_json::from_str("3").unwrap();
        assert_eq!(*n.value(), BudgetNodes::Count(3));
        let p: Text<BudgetNodes> = serde_json::from_str("\"10%\"").unwrap();
        assert_eq!(p.value().of(41), 5, "rounds up");
        assert!(serde_json::from_str::<Text<BudgetNodes>>("\"120%\"").is_err());

        let c: Cron = serde_json::from_str("\"0 8 * * mon-fri\"").unwrap();
        assert_eq!(c.text(), "0 8 * * mon-fri");
        assert!(serde_json::from_str::<Cron>("\"0 25 * * *\"").is_err());
    }
}
